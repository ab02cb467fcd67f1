"""benchmarks/gpu_check.py, the one-shot GPU check, in its CPU dry run: it has to deliver on the
first GPU it meets, so its bookkeeping (every figure, failures, the time budget, a run stopped
half-way) is checked here."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_check as gpu_check_module

DRY_RUN = ["--device", "cpu", "--tiny", "--no-compile"]


@pytest.fixture(scope="module")
def gpu_check():
    return gpu_check_module


def run(gpu_check, tmp_path, *extra: str) -> dict:
    out = tmp_path / "gpu_check.json"
    gpu_check.main([*DRY_RUN, "--out", str(out), *extra])
    return json.loads(out.read_text())


def test_dry_run_reports_every_figure(gpu_check, tmp_path):
    report = run(gpu_check, tmp_path)
    train = [(f["net"], f["precision"]) for f in report["train"]]
    assert train == [(n, p) for n in gpu_check.NETS for p in ("32", "bf16-mixed")]
    for fig in report["train"]:
        assert fig["loss_finite"] and fig["frames_per_s"] > 0 and fig["compile"] is False
    assert [f["precision"] for f in report["eval"]] == ["32", "bf16-mixed"]
    for fig in report["eval"]:
        assert fig["frames_per_s"] > 0
        assert fig["rollout_without_host_sync"] is None  # guarded on CUDA only
    assert report["skipped"] == [] and report["ddp"] is None


def test_a_failed_figure_does_not_cost_the_others(gpu_check, tmp_path, monkeypatch):
    plain = gpu_check.train_figures

    def fails_on_bair(name, *args):
        if name == "bair_lp":
            raise RuntimeError("CUDA out of memory (simulated)")
        return plain(name, *args)

    monkeypatch.setattr(gpu_check, "train_figures", fails_on_bair)
    report = run(gpu_check, tmp_path)
    errors = [f for f in report["train"] if "error" in f]
    assert [f["figure"] for f in errors] == [
        ["train", "bair_lp", p, False] for p in ("32", "bf16-mixed")
    ]
    assert all("out of memory" in f["error"] for f in errors)
    assert len(report["train"]) == 4 and len(report["eval"]) == 2


def test_budget_spent_lists_the_rest_as_skipped(gpu_check, tmp_path):
    report = run(gpu_check, tmp_path, "--budget", "0")
    assert report["train"] == [] and report["eval"] == []
    assert ["eval", "32"] in report["skipped"] and len(report["skipped"]) == 6


def test_a_stopped_run_keeps_what_it_measured(gpu_check, tmp_path, monkeypatch):
    """The shell wrapper kills the process at its time limit: the figures measured before
    are on disk."""

    def stopped(*args):
        raise KeyboardInterrupt  # as a signal would stop it: not caught as a failed figure

    monkeypatch.setattr(gpu_check, "eval_figures", stopped)
    out = tmp_path / "gpu_check.json"
    with pytest.raises(KeyboardInterrupt):
        gpu_check.main([*DRY_RUN, "--out", str(out)])
    report = json.loads(out.read_text())
    assert len(report["train"]) == 4 and report["eval"] == []


def test_ddp_figure_on_two_cpu_processes(tmp_path, monkeypatch):
    """The DDP figure, which a GPU run reaches only with two GPUs, runs the same worker over gloo
    on the CPU: two spawned processes train the tiny net and rank 0 reports."""
    fig = gpu_check_module.ddp_figures(gpu_check_module.parse_args(DRY_RUN))
    assert fig["processes"] == 2 and fig["loss_finite"] and fig["frames_per_s"] > 0
