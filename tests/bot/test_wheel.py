"""The Camelot-wheel picture."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bot.wheel import render_wheel


def test_wheel_is_a_png_of_the_asked_size() -> None:
    """The picture decodes as a square PNG of size_px."""
    img = Image.open(io.BytesIO(render_wheel("8A", ["9A", "9B"], size_px=400)))
    assert img.format == "PNG" and img.size == (400, 400)


def test_the_set_is_drawn() -> None:
    """Drawing a set changes the picture compared to the bare wheel (markers and path)."""
    bare = Image.open(io.BytesIO(render_wheel(None, [], size_px=300))).convert("RGB")
    drawn = Image.open(io.BytesIO(render_wheel("8A", ["8A", "3B"], size_px=300))).convert("RGB")
    diff = int((np.asarray(bare) != np.asarray(drawn)).any(axis=2).sum())  # pixels that changed
    assert diff > 500


def test_unparseable_keys_are_skipped() -> None:
    """Keys that are not Camelot codes are left out instead of failing."""
    assert render_wheel("?", ["13A", "", "x"], size_px=200) == render_wheel(None, [], size_px=200)
