"""A Camelot-wheel picture of a set: where each track sits and the path the set takes.

Drawn with Pillow (MIT-style HPND licence) so the bots need no plotting stack.
The outer ring holds the major keys (B), the inner ring the minor keys (A),
12 at the top and clockwise like the printed wheel DJs know.
"""

from __future__ import annotations

import colorsys
import io
import math
import re
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

_CAMELOT = re.compile(r"^(1[0-2]|[1-9])([AB])$")
BACKGROUND = (24, 26, 31)


def _parse(camelot: str) -> tuple[int, str] | None:
    m = _CAMELOT.match((camelot or "").strip().upper())
    return (int(m.group(1)), m.group(2)) if m else None


def _angle(number: int) -> float:
    """Centre angle (radians, screen coordinates) of a Camelot number; 12 at the top."""
    return math.radians((number % 12) * 30.0 - 90.0)


def _colour(number: int, letter: str) -> tuple[int, int, int]:
    # Neighbours on the wheel get neighbouring hues, as on the printed wheel.
    h = ((number - 1) * 30.0 + 170.0) % 360.0 / 360.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.55 if letter == "B" else 0.7, 0.85 if letter == "B" else 0.7)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def render_wheel(query_camelot: str | None, set_camelots: Sequence[str], *, size_px: int = 640) -> bytes:
    """PNG bytes of the wheel with the query key ringed and the set drawn as a numbered path.

    Parameters
    ----------
    query_camelot : str or None
        The input's key (``"8A"``), ringed in white; None when unknown.
    set_camelots : sequence of str
        The set's keys in play order; unparseable entries are skipped.
    size_px : int >= 200
        Width and height of the image.
    """
    if size_px < 200:
        raise ValueError(f"size_px must be at least 200, got {size_px}")
    img = Image.new("RGB", (size_px, size_px), BACKGROUND)
    draw = ImageDraw.Draw(img)
    c = size_px / 2
    r_out, r_mid, r_in = size_px * 0.47, size_px * 0.33, size_px * 0.19
    label_font = _font(max(10, size_px // 36))
    marker_font = _font(max(9, size_px // 44))

    for letter, (outer, inner) in (("B", (r_out, r_mid)), ("A", (r_mid, r_in))):
        for n in range(1, 13):
            start = math.degrees(_angle(n)) - 15
            box = [c - outer, c - outer, c + outer, c + outer]
            draw.pieslice(box, start, start + 30, fill=_colour(n, letter), outline=BACKGROUND, width=2)
        draw.ellipse([c - inner, c - inner, c + inner, c + inner], fill=BACKGROUND)

    def centre(number: int, letter: str) -> tuple[float, float]:
        radius = (r_out + r_mid) / 2 if letter == "B" else (r_mid + r_in) / 2
        a = _angle(number)
        return c + radius * math.cos(a), c + radius * math.sin(a)

    for letter in "AB":
        for n in range(1, 13):
            x, y = centre(n, letter)
            draw.text((x, y - size_px * 0.03), f"{n}{letter}", fill=(250, 250, 250), font=label_font, anchor="mm")

    query = _parse(query_camelot or "")
    if query is not None:
        n, letter = query
        outer, inner = (r_out, r_mid) if letter == "B" else (r_mid, r_in)
        start = math.degrees(_angle(n)) - 15
        draw.arc([c - outer, c - outer, c + outer, c + outer], start, start + 30, fill="white", width=6)
        draw.arc([c - inner, c - inner, c + inner, c + inner], start, start + 30, fill="white", width=6)

    # Tracks sharing a key are fanned out along the segment so every number stays readable.
    points: list[tuple[float, float]] = []
    seen: dict[tuple[int, str], int] = {}
    for cam in set_camelots:
        parsed = _parse(cam)
        if parsed is None:
            continue
        k = seen.get(parsed, 0)
        seen[parsed] = k + 1
        x, y = centre(*parsed)
        a = _angle(parsed[0]) + math.pi / 2
        shift = size_px * 0.05 * ((k + 1) // 2) * (1 if k % 2 else -1)  # 0, +1, -1, +2, …
        points.append((x + shift * math.cos(a), y + size_px * 0.02 + shift * math.sin(a)))
    if query is not None:
        qx, qy = centre(*query)
        path = [(qx, qy + size_px * 0.02)] + points
    else:
        path = points
    if len(path) > 1:
        draw.line(path, fill=(255, 255, 255), width=max(2, size_px // 200), joint="curve")
    rad = size_px * 0.022
    for i, (x, y) in enumerate(points, start=1):
        draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=(255, 255, 255), outline=BACKGROUND, width=2)
        draw.text((x, y), str(i), fill=(20, 20, 20), font=marker_font, anchor="mm")
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)  # speed over bytes: it is rendered per reply
    return out.getvalue()
