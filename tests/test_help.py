"""``--help`` of the Hydra commands, written from the comments in conf/: the groups without
their building blocks, and every key of the composed config with its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from svg_lightning.analyze import ANALYSES
from svg_lightning.config import config_dir
from svg_lightning.help import command_help, one_line, parse, summary

COMMANDS = ("train", "eval", "sample", "analyze")


def section(text: str, title: str) -> list[str]:
    """The lines of the help section whose title starts with ``title``."""
    return text.split(f"== {title}")[1].split("\n\n")[0].splitlines()[1:]


def options(text: str) -> dict[str, list[str]]:
    """group -> the options the groups section lists under it."""
    found: dict[str, list[str]] = {}
    for line in section(text, "Config groups"):
        if group := re.match(r"^([\w/]+):", line):
            found[group[1]] = []
        elif option := re.match(r"^  (\S+?)\*?(?:\s|$)", line):
            found[list(found)[-1]].append(option[1])
    return found


def described_keys(text: str) -> dict[str, str]:
    """Dotted key -> its description ('' if none) in the config section. A description is on the
    key's line after two spaces and a #, or alone on the next line when the key is long."""
    keys: dict[str, str] = {}
    path: list[str] = []
    for line in section(text, "Config ("):
        if line.lstrip().startswith("# "):
            keys[".".join(path)] = line.strip()[2:]
            continue
        entry, _, description = line.partition("  # ")
        depth = (len(entry) - len(entry.lstrip())) // 2
        path = path[:depth] + [entry.strip().split(":")[0]]
        keys[".".join(path)] = description.strip()
    return keys


def composed_keys(config_name: str) -> set[str]:
    """Every key and node of the command's config, as Hydra composes it; ``_target_`` aside."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = OmegaConf.to_container(compose(config_name), resolve=False)

    def walk(node: dict, prefix: str):
        for key, value in node.items():
            if key != "_target_":
                yield prefix + key
                if isinstance(value, dict):
                    yield from walk(value, f"{prefix}{key}.")

    return set(walk(cfg, ""))


def test_train_help_lists_the_choices_without_the_building_blocks():
    text = command_help("train")
    listed = options(text)
    conf = Path(config_dir())
    for group in ("model", "data", "experiment", "debug", "trainer"):
        files = sorted(p.stem for p in (conf / group).glob("*.yaml"))
        assert listed[group] == [f for f in files if not f.startswith("_")], group
    assert "_shared" not in text  # data/_shared.yaml: what every dataset starts from
    assert not [g for g in listed if "/" in g]  # no experiment/base group
    assert not [o for opts in listed.values() for o in opts if "/" in o or o.startswith("_")]
    assert re.search(r"^  smmnist\* +Stochastic Moving MNIST", text, re.M)  # the default, marked
    assert all(len(line.split()) > 1 for line in section(text, "Config groups"))  # each described


@pytest.mark.parametrize("config_name", COMMANDS)
def test_every_key_shown_has_a_description(config_name):
    keys = described_keys(command_help(config_name))
    assert set(keys) == composed_keys(config_name)  # all of them, nothing invented
    missing = sorted(key for key, description in keys.items() if not description)
    assert not missing, f"keys without a comment in conf/: {missing}"


def test_descriptions_come_from_the_yaml_comments():
    train = described_keys(command_help("train"))
    assert train["model.beta"] == "weight of the KL term"  # conf/model/svg_lp.yaml, inline
    assert train["data.image_size"] == "32 or 64"  # smmnist.yaml's, before _shared.yaml's
    assert train["model"] == "model=svg_lp"  # a group's node names the option in use
    assert train["model.bn_stats"].endswith("per_step | joint")  # asides left out to fit
    evaluation = described_keys(command_help("eval"))
    assert evaluation["eval.num_samples"].startswith("futures per test video")


def test_help_follows_the_overrides():
    text = command_help("train", ["+experiment=kth_lp", "callbacks=[default,early_stopping]"])
    assert re.search(r"^  kth_lp\* ", text, re.M)
    assert re.search(r"^  early_stopping\* ", text, re.M)
    keys = described_keys(text)
    assert keys["data"] == "data=kth" and keys["callbacks.early_stopping.patience"]
    bad = command_help("train", ["data=nope"])  # help prints anyway, and says why
    assert "shown without the overrides" in bad and "data/nope" in bad


def test_analyze_help_lists_the_analyses():
    lines = section(command_help("analyze", analyses=ANALYSES), "Analyses")
    assert [line.split()[0] for line in lines] == ["prior", "trajectories"]
    assert all(len(line.split()) > 3 for line in lines)  # each with its line


def test_comments_are_read_from_the_yaml_text(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(
        "# @package _global_\n"
        "# The file's summary. More detail.\n"
        "defaults:\n"
        "  - data: smmnist  # the dataset\n"
        "  # the trainer\n"
        "  - trainer: default\n"
        "  - _self_\n"
        "\n"
        "a: 1  # inline wins\n"
        "# the block above\n"
        "# continues here\n"
        "b:\n"
        '  c: "x # not a comment"  # but this is\n'
        "  d: 2\n"
        "\n"
        "# a block away from its key is no description\n"
        "\n"
        "e: 3\n"
    )
    found = parse(path)
    assert found.global_package and summary(found.header) == "The file's summary."
    assert found.defaults == [
        ("data", "smmnist", ["the dataset"]),
        ("trainer", "default", ["the trainer"]),
        ("_self_", None, []),
    ]
    assert found.keys == {"a": ["inline wins"], "b": ["the block above", "continues here"],
                          "b.c": ["but this is"], "b.d": [], "e": []}  # fmt: skip
    assert summary(found.keys["b"]) == "the block above continues here"


def test_summaries_fit_one_line():
    assert summary(["See Figs. 7 and 8 here. Then more."]) == "See Figs. 7 and 8 here."
    assert summary(["An example:", "  python -m x"]) == "An example"
    text = "last (paper) | reference (frame n_past-2, the reference code) | previous"
    assert one_line(text, 40) == "last | reference | previous"  # the asides go first
    assert one_line("a b c d e f g h", 9) == "a b c ..."
