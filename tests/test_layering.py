"""The package's imports flow one way: entry points -> orchestration -> LightningModule and
DataModules -> models, data, metrics -> foundation. Imports inside functions count too: a
function-level import that dodges a cycle is still a cycle. Folders too: no two top-level
subpackages (or top-level modules) import each other, even through different modules."""

from __future__ import annotations

import ast
from pathlib import Path

import svg_lightning

ROOT = Path(svg_lightning.__file__).parent

# Lowest layer first; a module may import modules of its own layer or of lower ones. A module
# belongs to the layer of the longest prefix that matches its name; every __main__ is an entry.
LAYERS = {
    "foundation": ("svg_lightning", "svg_lightning.errors", "svg_lightning.files",
                   "svg_lightning.runs", "svg_lightning.console", "svg_lightning.devices",
                   "svg_lightning.viz", "svg_lightning.numbering"),
    "core": ("svg_lightning.models", "svg_lightning.metrics", "svg_lightning.data"),
    "lightning": ("svg_lightning.module", "svg_lightning.callbacks", "svg_lightning.loggers",
                  "svg_lightning.data.base", "svg_lightning.data.datamodules"),
    "orchestration": ("svg_lightning.checkpoint", "svg_lightning.config",
                      "svg_lightning.config_keys", "svg_lightning.memory_checks",
                      "svg_lightning.compose",
                      "svg_lightning.help", "svg_lightning.runner", "svg_lightning.hydra_entry",
                      "svg_lightning.train", "svg_lightning.api",
                      "svg_lightning.evaluate", "svg_lightning.sample", "svg_lightning.analyze",
                      "svg_lightning.data.prepare", "svg_lightning.convert",
                      "svg_lightning.reproduce", "svg_lightning.sweep"),
    # Each package's command line (python -m svg_lightning.X), and svg, which runs them by name.
    "entry": ("svg_lightning.cli", "svg_lightning.analyze.command",
              "svg_lightning.data.prepare.command", "svg_lightning.convert.command",
              "svg_lightning.reproduce.command"),
}  # fmt: skip
ORDER = list(LAYERS)
# Packages at the bottom that import nothing else of svg_lightning beyond what is listed.
SELF_CONTAINED = {
    "svg_lightning.models": ("svg_lightning.models",),
    "svg_lightning.metrics": ("svg_lightning.metrics",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str, source: str, known: set[str], is_package: bool = False) -> set[str]:
    """The svg_lightning modules that module ``name`` (code ``source``) imports anywhere."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m == "svg_lightning" or m.startswith("svg_lightning.")}


def layer(name: str) -> int:
    if name.endswith("__main__"):
        return ORDER.index("entry")
    best, where = -1, None
    for i, prefixes in enumerate(LAYERS.values()):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, where = len(prefix), i
    assert where is not None, f"{name} is in no layer: add it to LAYERS"
    return where


def graph() -> dict[str, set[str]]:
    found = modules()
    return {
        name: imports(name, path.read_text(), set(found), path.name == "__init__.py") - {name}
        for name, path in found.items()
    }


def test_no_upward_imports():
    bad = [
        f"{a} ({ORDER[layer(a)]}) imports {b} ({ORDER[layer(b)]})"
        for a, targets in graph().items()
        for b in targets
        if layer(b) > layer(a)
    ]
    assert not bad, "\n".join(sorted(bad))


def test_bottom_packages_are_self_contained():
    bad = [
        f"{a} imports {b}"
        for a, targets in graph().items()
        for pkg, allowed in SELF_CONTAINED.items()
        if a == pkg or a.startswith(pkg + ".")
        for b in targets
        if not any(b == ok or b.startswith(ok + ".") for ok in allowed)
    ]
    assert not bad, "\n".join(sorted(bad))


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(g):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def folder(name: str) -> str:
    """A module's folder node: its top-level subpackage or top-level module (``svg_lightning``
    itself for the package's ``__init__``)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def folder_graph(g: dict[str, set[str]]) -> dict[str, set[str]]:
    folders: dict[str, set[str]] = {}
    for a, targets in g.items():
        folders.setdefault(folder(a), set()).update(folder(b) for b in targets)
    return {a: targets - {a} for a, targets in folders.items()}


def test_no_folder_cycles():
    cycle = find_cycle(folder_graph(graph()))
    assert cycle is None, "folders that import each other: " + " -> ".join(cycle)


def test_the_checks_can_fail():
    """The cycle finder and the layer map catch what they are meant to catch."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    # No module cycle, but two folders that import each other through different modules.
    modules_only = {
        "svg_lightning.a.x": {"svg_lightning.b.y"},
        "svg_lightning.b.y": set(),
        "svg_lightning.b.z": {"svg_lightning.a.w"},
        "svg_lightning.a.w": set(),
    }
    assert find_cycle(modules_only) is None
    assert find_cycle(folder_graph(modules_only)) == ["a", "b", "a"]
    assert layer("svg_lightning.models.svg") < layer("svg_lightning.module")
    assert layer("svg_lightning.data.datamodules") > layer("svg_lightning.data.smmnist")
    assert layer("svg_lightning.evaluate.__main__") == ORDER.index("entry")
    code = "import torch\n\ndef f():\n    from ..train import train\n    from . import svg\n"
    edges = imports("svg_lightning.models.probe", code, set(modules()))
    assert edges == {"svg_lightning.train", "svg_lightning.models.svg"}  # in functions too
