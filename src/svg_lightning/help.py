"""``--help`` of the Hydra commands (train, evaluate, sample, analyze), written from ``conf/``:
the config groups a command takes with a line on each option, then every key of the command's
composed config with the comment next to it, or just above it, in the yaml that declares it.

The descriptions live once, as comments in the yaml files. PyYAML drops comments, so the files
are read as text lines: enough for the plain block style ``conf/`` is written in (one key per
line, flow lists only on one line)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from svg_lightning.compose import group_options
from svg_lightning.config import config_dir

WIDTH = 100
# The class a node instantiates: picked by the group's option, not a setting to override.
HIDDEN_KEYS = ("_target_",)
# Groups a command takes that its defaults list leaves out: they are added with a plus. The
# experiment is not a default because with none the quickstart preset applies.
ADDED_GROUPS = {
    "train": {"experiment": "a paper setting, added with a plus: +experiment=NAME"},
}

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[\w.\-/]+|'[^']*'|\"[^\"]*\") *:(?=\s|$)(?P<rest>.*)$")
_ITEM = re.compile(r"^ *- *(?P<body>.*)$")
# Words whose period does not end a sentence ("Figs. 7 and 8", "e.g. logger=csv").
_ABBREVIATIONS = ("e.g", "i.e", "cf", "vs", "Fig", "Figs", "Sec", "Eq")


@dataclass
class YamlComments:
    """What one config file says about itself in comments."""

    header: list[str] = field(default_factory=list)  # leading comment lines: the file's summary
    keys: dict[str, list[str]] = field(default_factory=dict)  # dotted key -> its comment lines
    defaults: list[tuple[str, str | None, list[str]]] = field(default_factory=list)
    global_package: bool = False  # `# @package _global_`: its keys are the config's top level


def _split_comment(text: str) -> tuple[str, str | None]:
    """``value  # comment`` -> (value, comment). A # starts a comment after a space (or at the
    start), never inside a quoted value: YAML only quotes a scalar from its first character."""
    value = text.lstrip()
    start = len(text) - len(value)
    if value[:1] in ("'", '"'):
        close = value.find(value[0], 1)
        start += close + 1 if close > 0 else len(value)
    hash_ = re.search(r"(?:^|(?<=\s))#", text[start:])
    if not hash_:
        return text.strip(), None
    at = start + hash_.start()
    return text[:at].strip(), text[at + 1 :].removeprefix(" ").rstrip()


def parse(path: Path) -> YamlComments:
    """The comments of one yaml file: the header, each key's (inline, else the comment block
    right above it) and each defaults entry's."""
    found = YamlComments()
    pending: list[str] = []  # the comment block above the current line
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings the line is inside
    in_header, in_defaults = True, False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped[1:].removeprefix(" ").rstrip()
            if text.startswith("@package"):
                found.global_package = text.split()[-1] == "_global_"
                continue
            pending.append(text)
            if in_header:
                found.header.append(text)
            continue
        in_header = False
        above, pending = pending, []
        if not stripped:
            continue
        if item := _ITEM.match(line):
            if in_defaults:
                body, inline = _split_comment(item["body"])
                name, _, option = (part.strip() for part in body.partition(":"))
                option = None if option in ("", "null") else option
                found.defaults.append((name, option, [inline] if inline else above))
            continue
        if not (key := _KEY.match(line)):
            continue
        indent, name = len(key["indent"]), key["key"].strip("'\"")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if indent == 0:
            in_defaults = name == "defaults"
        dotted = ".".join([k for _, k in stack] + [name])
        stack.append((indent, name))
        if not in_defaults:
            inline = _split_comment(key["rest"])[1]
            found.keys[dotted] = [inline] if inline else above
    return found


def summary(lines: Sequence[str]) -> str:
    """The first sentence of a comment block. An indented line starts a sub-block (an example
    command, a list), so the summary ends before it; a trailing colon that led into one goes."""
    paragraph = []
    for line in lines:
        if line.startswith(" ") and paragraph:
            break
        paragraph.append(line)
    text = " ".join(" ".join(paragraph).split())
    for end in re.finditer(r"[.!?](?=\s+[A-Z])", text):
        if (text[: end.start()].split() or [""])[-1].lstrip("(") not in _ABBREVIATIONS:
            return text[: end.end()]
    return text.rstrip(":")


def one_line(text: str, width: int) -> str:
    """``text`` in ``width`` characters, without its final period. Too long, it loses the asides
    in parentheses that follow a word, as they hold the detail ("last (paper) | reference (frame
    n_past-2, ...) | previous" -> "last | reference | previous"); still too long, the whole text
    is cut at a word and marked "..." (the yaml has the full comment)."""
    text = text.removesuffix(".")
    if len(text) > width:
        shorter = re.sub(r"(?<=\w) \([^()]*\)", "", text)
        text = shorter if len(shorter) <= width else text[: width - 3].rsplit(" ", 1)[0] + " ..."
    return text


def described_analyses(functions: Mapping[str, Callable]) -> dict[str, str]:
    """Each analysis of ``analyze`` (name -> the function that runs it) with the first sentence
    of its module's docstring, less the ``analyze NAME``: it opens with."""
    described = {}
    for name, function in functions.items():
        doc = inspect.getdoc(inspect.getmodule(function)) or ""
        described[name] = re.sub(r"^``[^`]*``:\s*", "", summary(doc.split("\n\n")[0].splitlines()))
    return described


def analyses_section(functions: Mapping[str, Callable]) -> str:
    """The analyses ``analyze`` takes as its first argument, a line each."""
    rows = list(described_analyses(functions).items())
    return "\n".join(["== Analyses (the first argument) ==", *_columns(rows)])


class Command(NamedTuple):
    """A sub-command of ``svg``: the module ``python -m`` runs it as, a line on what it does."""

    module: str
    summary: str


def svg_usage(commands: Mapping[str, Command]) -> str:
    """``svg --help``: every sub-command with its line and its ``python -m`` form."""
    name_col = max(map(len, commands)) + 2
    summary_col = max(len(c.summary) for c in commands.values()) + 2
    rows = [
        f"  {name:<{name_col}}{c.summary:<{summary_col}}python -m {c.module}"
        for name, c in commands.items()
    ]
    head = [
        f"usage: svg {{{','.join(commands)}}} [arguments]",
        "Each also runs as the python -m module on its right; svg COMMAND --help: its own help.",
    ]
    return "\n".join([*head, "", "commands:", *rows]) + "\n"


def _compose(config_name: str, overrides: Sequence[str]) -> tuple[DictConfig, str | None]:
    """The command's config as Hydra composes it; overrides that do not compose are left out
    (help must print anyway) and their error comes back as a note."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        try:
            return compose(config_name, list(overrides), return_hydra_config=True), None
        except (HydraException, OmegaConfBaseException) as err:
            if not overrides:
                raise
            note = f"(shown without the overrides: {str(err).splitlines()[0]})"
            return compose(config_name, return_hydra_config=True), note


def _columns(rows: list[tuple[str, str]], prefix: str = "", most: int = 40) -> list[str]:
    """``text  description`` rows, the descriptions one line each, in one column; a text too
    long for the column puts its description on the line below."""
    col = min(max(len(text) for text, _ in rows) + 2, most) if rows else 0
    out = []
    for text, description in rows:
        if not description:
            out.append(text)
            continue
        line = " " * col + prefix + one_line(description, WIDTH - col - len(prefix))
        if len(text) + 2 <= col:
            out.append(text + line[len(text) :])
        else:
            out += [text, line]
    return out


class _Conf:
    """The files under conf/ a command's config was composed from, parsed once."""

    def __init__(self, root: Path, config_name: str, choices: dict):
        self.root = root
        self.primary = parse(root / f"{config_name}.yaml")
        self._parsed: dict[Path, YamlComments] = {}
        # (prefix of the keys it declares, file), first the primary config, then each chosen
        # option and the files its defaults list pulls in, global ones last: a key's description
        # comes from where it is declared, not from a global file that only changes its value.
        groups, globals_ = [], []
        for group, choice in choices.items():
            if group == "hydra" or group.startswith("hydra/") or choice is None:
                continue
            for option in [choice] if isinstance(choice, str) else choice:
                for path in self._chain(root / group, option, set()):
                    comments = self.file(path)
                    if comments.global_package:
                        globals_.append(("", comments))
                    else:
                        groups.append((f"{group}.", comments))
        self.sources = [("", self.primary), *groups, *globals_]

    def file(self, path: Path) -> YamlComments:
        if path not in self._parsed:
            self._parsed[path] = parse(path)
        return self._parsed[path]

    def _chain(self, folder: Path, option: str, seen: set[Path]) -> list[Path]:
        """An option's file and the files its defaults list names, nearest first."""
        path = folder / f"{option}.yaml"
        if path in seen or not path.is_file():
            return []
        seen.add(path)
        chain = [path]
        for name, value, _ in self.file(path).defaults:
            if value is None and not name.startswith(("override", "_self_", "/")):
                chain += self._chain(path.parent, name, seen)
        return chain

    def describe(self, dotted: str) -> str:
        """The comment of the first file, in ``sources`` order, that declares the key with one;
        a global file only counts for a key no other file declares."""
        declared = [
            (comments, dotted[len(prefix) :])
            for prefix, comments in self.sources
            if dotted.startswith(prefix) and dotted[len(prefix) :] in comments.keys
        ]
        if any(not comments.global_package for comments, _ in declared):
            declared = [(c, key) for c, key in declared if not c.global_package]
        return next((summary(c.keys[key]) for c, key in declared if c.keys[key]), "")

    def options(self, group: str) -> list[str]:
        """A group's options: the files in its folder; a name starting with _ and sub-folders
        (experiment/base/) are building blocks of the others, not choices."""
        return group_options(group, self.root)

    def option_summary(self, group: str, option: str) -> str:
        return summary(self.file(self.root / group / f"{option}.yaml").header)


def _value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if value != "" else "''"


def _key_rows(node: dict, conf: _Conf, choices: dict, path: str = "") -> list:
    rows = []
    indent = "  " * path.count(".")
    for key, value in node.items():
        if key in HIDDEN_KEYS:
            continue
        dotted = f"{path}{key}"
        description = conf.describe(dotted)
        if not path and choices.get(key) is not None:  # a group's node: which option fills it
            description = f"{key}={_value(choices[key])}"
        if isinstance(value, dict):
            rows.append((f"{indent}{key}:" + (" {}" if not value else ""), description))
            rows += _key_rows(value, conf, choices, f"{dotted}.")
        else:
            rows.append((f"{indent}{key}: {_value(value)}", description))
    return rows


def command_help(
    config_name: str,
    overrides: Sequence[str] = (),
    analyses: Mapping[str, Callable] | None = None,
) -> str:
    """The ``--help`` text of the Hydra command whose primary config is ``conf/<config_name>.yaml``
    (train, eval, sample, analyze), for its config as composed with ``overrides`` (the command
    line's other arguments: ``+experiment=kth_lp --help`` shows that experiment's values).
    ``analyses``: the analyze command's table (name -> function), listed after the header; it
    is passed in, as the analyses sit above this module.

    Composes through Hydra's compose API, so call it before the command's ``hydra.main`` runs,
    not inside it."""
    cfg, note = _compose(config_name, overrides)
    root = Path(config_dir())
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    for override in cfg.hydra.overrides.task:  # Hydra leaves list choices (callbacks=[a,b]) out
        group, _, value = override.lstrip("+").partition("=")
        if group not in choices and (root / group).is_dir() and value.startswith("["):
            choices[group] = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
    conf = _Conf(root, config_name, choices)
    sections = [cfg.hydra.help.header.rstrip()]
    if note:
        sections.append(note)
    if analyses:
        sections.append(analyses_section(analyses))

    groups = {
        name: summary(lines)
        for name, _, lines in conf.primary.defaults
        if name != "hydra" and (conf.root / name).is_dir()  # not `override ...`, `_self_`
    }
    groups = {**ADDED_GROUPS.get(config_name, {}), **groups}
    rows = []
    for group, description in groups.items():
        chosen = choices.get(group)
        chosen = [chosen] if isinstance(chosen, str) else list(chosen or ())
        unset = "" if chosen else "none in use; "
        rows.append((f"{group}:", unset + description))
        for option in conf.options(group):
            mark = "*" if option in chosen else ""
            rows.append((f"  {option}{mark}", conf.option_summary(group, option)))
    if rows:
        title = "== Config groups (group=option; * = the option in use) =="
        sections.append("\n".join([title, *_columns(rows, most=28)]))

    node = OmegaConf.to_container(cfg, resolve=False)
    node.pop("hydra", None)
    title = "== Config (override any key: key.path=value; ${...} values follow another key) =="
    sections.append("\n".join([title, *_columns(_key_rows(node, conf, choices), "# ")]))
    sections.append(cfg.hydra.help.footer.rstrip())
    return "\n\n".join(sections) + "\n"
