"""Tables and file lists printed at the end of a command (rich)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table


def progress(items: Iterable, description: str, total: int | None = None) -> Iterator:
    """``items`` with a progress bar (items done, time elapsed and left)."""
    return iter(track(items, description=description, total=total))


def print_table(title: str, columns: list[str], rows: list[list], paths: dict[str, Path]) -> None:
    """``rows`` of strings or numbers (shown with 3 decimals), then where each output is."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[c if isinstance(c, str) else f"{c:.3f}" for c in row])
    console = Console(width=max(Console().width, 100))
    console.print(table)
    for name, path in paths.items():
        console.print(f"[bold]{name}[/bold]: {path}", soft_wrap=True)
