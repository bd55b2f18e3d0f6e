"""How results look in a terminal (the CLI's platform formatting)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from workers.catalog import IngestReport
from workers.messages import MixResult


def _fmt_query(q: dict[str, Any]) -> str:
    ident = q.get("identified")
    head = ""
    if ident:
        head = f"identified: {ident.get('artist') or '?'} – {ident.get('title')} (confidence {ident.get('confidence', 0):.2f})\n"
    elif q.get("title"):
        head = f"{q.get('artist') + ' – ' if q.get('artist') else ''}{q['title']}\n"
    tempo = f"{q['bpm']:.1f} BPM" if q.get("bpm") else "no clear tempo"  # 0.0: analysed, no beat
    return head + (
        f"{tempo} · {q.get('key', '?')} ({q.get('camelot', '?')}) · energy {q.get('energy', '?')}"
    )


def print_result(console: Console, result: MixResult) -> None:
    """A readable ranked table with the reasons each track fits."""
    console.print(f"[bold]Query[/bold]  {_fmt_query(result.query)}")
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if not result.results:
        return
    table = Table(show_lines=False, header_style="bold")
    for col, just in (("#", "right"), ("Track", "left"), ("BPM", "right"), ("Key", "left"), ("E", "right"), ("Score", "right"), ("Why it fits", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for c in result.results:
        name = f"{c.artist} – {c.title}" if c.artist else c.title
        table.add_row(
            str(c.rank), name, f"{c.bpm:.1f}" if c.bpm else "-", f"{c.camelot} {c.key}", str(c.energy), f"{c.score:.2f}", "; ".join(c.reasons)
        )
    console.print(table)


def print_ingest(console: Console, report: IngestReport) -> None:
    console.print(
        f"added {len(report.added)} track(s); {report.already_present} already in the catalog; "
        f"{len(report.failed)} could not be read"
    )
    if report.failed:
        table = Table(title="Not added", header_style="bold")
        table.add_column("File")
        table.add_column("Reason")
        for f in report.failed:
            table.add_row(f.path, f.reason)
        console.print(table)
