"""What a command prints (rich): the config it runs with, progress, and at the end tables and
where its outputs went."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.progress import track
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree


@rank_zero_only
def print_config(cfg: DictConfig) -> None:
    """The resolved config as a tree: one branch per group, the rest at the end."""
    tree = Tree("[bold]config[/bold]", guide_style="dim")
    groups = {k: v for k, v in cfg.items() if isinstance(v, DictConfig)}
    rest = {k: v for k, v in cfg.items() if k not in groups}
    for key, node in groups.items():
        text = OmegaConf.to_yaml(node, resolve=True).rstrip() or "{}"
        tree.add(f"[bold]{key}[/bold]").add(Syntax(text, "yaml", background_color="default"))
    if rest:
        text = OmegaConf.to_yaml(OmegaConf.create(rest)).rstrip()
        tree.add("[bold]other[/bold]").add(Syntax(text, "yaml", background_color="default"))
    Console().print(tree)


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
    console.print(table if columns else f"[bold]{title}[/bold]")  # rich shows no empty table
    for name, path in paths.items():
        console.print(f"[bold]{name}[/bold]: {path}", soft_wrap=True)
