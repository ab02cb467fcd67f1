"""`python -m svg_lightning.evaluate` on a tiny trained checkpoint."""

import importlib
import json
from types import SimpleNamespace

import pytest
import torch
import torchvision

from svg_lightning.devices import AUTO_SAMPLE_CHUNK, sample_chunk
from svg_lightning.errors import CheckpointError, ConfigError
from svg_lightning.evaluate import evaluate, report
from svg_lightning.evaluate.compare import compare_main
from svg_lightning.evaluate.report import best_samples
from svg_lightning.files import sha256
from svg_lightning.metrics import ssim
from svg_lightning.metrics.best_of_n import EvalSettings
from svg_lightning.metrics.fvd import I3D, I3D_FILE
from svg_lightning.metrics.perceptual import ALEXNET_FILE, MissingWeightsError, lpips_files
from tests.helpers import compose_cfg, run_cli

evaluate_mod = importlib.import_module("svg_lightning.evaluate")  # the module, not the function
EVAL = ["eval.num_videos=5", "eval.num_samples=3", "eval.n_future=4", "eval.batch_size=2",
        "eval.sample_chunk=4", "eval.grid_videos=2", "eval.grid_samples=2", "logger=csv",
        "trainer.accelerator=cpu"]  # fmt: skip


@pytest.fixture
def run_dir(trained_run):
    return trained_run


def eval_cfg(tmp_path, ckpt, *overrides):
    return compose_cfg(tmp_path, f"ckpt_path={ckpt}", *EVAL, *overrides, config_name="eval")


def test_evaluation_writes_all_outputs(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    _, paths = evaluate(eval_cfg(tmp_path, ckpt))
    out = tmp_path / "out"
    names = ("metrics.json", "curves.csv", "curves.png", "samples.png", "samples_animation.gif")
    for name in names:
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    pr = m["protocol"]
    assert (pr["dataset"], pr["n_past"], pr["n_future"]) == ("smmnist", 5, 4)  # protocol n_past
    assert (pr["num_videos"], pr["num_samples"]) == (5, 3)
    assert pr["checkpoint_sha256"] == sha256(ckpt) and pr["package_version"]
    assert "valid region" in pr["ssim"] and "1e-10" in pr["psnr"]
    keys = (
        "ssim_bestofN",
        "ssim_meanofN",
        "ssim_worstofN",
        "psnr_bestofN",
        "ssim_copy_last",
        "psnr_black",
    )
    for key in keys:
        assert len(m["curves"][key]["mean"]) == len(m["curves"][key]["ci95"]) == 4
    s = m["summary"]
    for metric in ("ssim", "psnr"):  # a tiny untrained model's samples nearly coincide
        worst, mean, best = (s[f"{metric}_{k}"]["mean"] for k in ("worstofN", "meanofN", "bestofN"))
        assert worst - 1e-5 <= mean <= best + 1e-5
    lines = (out / "curves.csv").read_text().splitlines()
    assert lines[0].startswith("frame,ssim_bestofN_mean") and len(lines) == 5
    assert lines[1].startswith("6,")  # first predicted frame after 5 conditioning frames
    assert set(paths) >= {"metrics", "curves_plot", "grid", "animation"}
    assert list((out / "csv").rglob("metrics.csv"))  # logged to the run's logger type too


def test_summary_is_logged_at_the_checkpoint_step_under_the_file_names(tmp_path, monkeypatch):
    """test/* scores and media at one step (the scored checkpoint's), each medium under its file's
    stem (numbering.py): test/samples is samples.png."""
    logged = []

    def scalars(loggers, values, step):
        logged.extend((key, step) for key in values)

    def media(loggers, key, path, step):
        logged.append((key, path.name, step))

    monkeypatch.setattr(report, "log_scalars", scalars)
    monkeypatch.setattr(report, "log_media", media)
    files = ("curves.png", "samples.png", "samples_animation.gif")
    paths = dict(zip(("curves_plot", "grid", "animation"), (tmp_path / f for f in files)))
    metrics = {"protocol": {"step": 20}, "summary": {"ssim_bestofN": {"mean": 0.5}}}
    report.log_to_loggers([], metrics, paths, "test")  # the protocol's step: after training
    report.log_to_loggers([], {**metrics, "protocol": {}}, paths, "test", step=7)
    expected = [("test/ssim_bestofN",), ("test/curves", "curves.png"),
                ("test/samples", "samples.png"),
                ("test/samples_animation", "samples_animation.gif")]  # fmt: skip
    assert logged == [(*entry, step) for step in (20, 7) for entry in expected]


def test_the_sample_shown_as_best_is_the_one_scored(tmp_path, run_dir, monkeypatch):
    """The grid's "best (SSIM)" column is drawn again with the evaluation's own noise: its
    time-averaged SSIM over the same target frames is the best-of-N score the evaluation
    recorded for that video."""
    seen = {}
    plain = evaluate_mod.report_run

    def keep(out, model, result, settings, datamodule, *args, **kwargs):
        seen.update(model=model, result=result, settings=settings, data=datamodule)
        return plain(out, model, result, settings, datamodule, *args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "report_run", keep)
    evaluate(eval_cfg(tmp_path, run_dir / "checkpoints" / "last.ckpt"))
    result = seen["result"]
    _, target, drawn, best = best_samples(seen["model"], seen["data"].test_set, seen["settings"], 3)
    assert drawn.shape[:2] == (3, 3) and best.shape == target.shape
    assert result.index[:3].tolist() == [0, 1, 2]
    scored = result.per_video["ssim_bestofN"][:3].mean(-1)
    torch.testing.assert_close(ssim(best, target).mean(-1), scored.float(), atol=1e-6, rtol=0)


def test_best_samples_picks_by_mean_ssim_with_the_evaluation_noise():
    """With samples that differ (the tiny trained model's nearly coincide): the best column is
    each video's sample of highest mean SSIM, drawn with ``noise_for``'s noise."""
    p, f = 2, 3
    items = [{"frames": torch.rand(p + f, 1, 16, 16), "index": torch.tensor(i)} for i in range(2)]
    amplitude = torch.tensor([[0.3, 0.01, 0.6], [0.02, 0.5, 0.2]])  # best: sample 1, sample 0

    class Model:
        device = torch.device("cpu")

        def noise_for(self, index, settings):
            assert index.tolist() == [0, 1]
            return "the evaluation's noise"

        def sample(self, cond, n_future, num_samples, chunk, noise):
            assert noise == "the evaluation's noise" and n_future == f and num_samples == 3
            target = torch.stack([it["frames"][p:] for it in items])[:, None]
            wobble = torch.randn(2, 3, f, 1, 16, 16, generator=torch.Generator().manual_seed(0))
            return SimpleNamespace(frames=target + amplitude[:, :, None, None, None, None] * wobble)

    settings = EvalSettings(p, f, 3)
    cond, target, drawn, best = best_samples(Model(), items, settings, videos=2)
    torch.testing.assert_close(cond, torch.stack([it["frames"][:p] for it in items]))
    assert torch.equal(best, drawn[torch.arange(2), torch.tensor([1, 0])])
    assert drawn.min() >= 0 and drawn.max() <= 1  # clamped to the image range, as scored


def test_evaluation_is_reproducible(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    evaluate(eval_cfg(tmp_path / "a", ckpt))
    evaluate(eval_cfg(tmp_path / "b", ckpt, "eval.batch_size=3", "eval.sample_chunk=2"))
    a = json.loads((tmp_path / "a" / "out" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "out" / "metrics.json").read_text())
    for key, curve in a["curves"].items():
        assert curve["mean"] == pytest.approx(b["curves"][key]["mean"], abs=1e-5), key


def test_batch_statistics_are_opt_in_and_depend_on_the_batch(tmp_path, run_dir):
    """eval.bn=batch generates with the statistics of each batch, as the reference's generation
    code: recorded in the protocol, and the numbers change with the batch composition."""
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    metrics = {}
    for size in (2, 4):
        overrides = ("eval.bn=batch", "eval.num_videos=4", f"eval.batch_size={size}")
        metrics[size], _ = evaluate(eval_cfg(tmp_path / str(size), ckpt, *overrides))
    assert metrics[2]["protocol"]["bn"] == "batch"
    assert metrics[2]["summary"]["ssim_meanofN"]["mean"] != pytest.approx(
        metrics[4]["summary"]["ssim_meanofN"]["mean"], abs=1e-6
    )
    with pytest.raises(ConfigError, match="eval.bn"):
        evaluate(eval_cfg(tmp_path / "bad", ckpt, "eval.bn=train"))
    with pytest.raises(ConfigError, match="a single video"):
        evaluate(eval_cfg(tmp_path / "one", ckpt, "eval.bn=batch", "eval.batch_size=2"))


def _eval_cli(cwd, *args):
    return run_cli("svg_lightning.evaluate", cwd, *args)


@pytest.mark.slow
def test_one_and_two_processes_give_the_same_numbers(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    results = []
    for devices in (1, 2):
        cwd = tmp_path / f"p{devices}"
        cwd.mkdir()
        strategy = "ddp" if devices > 1 else "auto"
        r = _eval_cli(
            cwd,
            f"ckpt_path={ckpt}",
            *EVAL,
            f"trainer.devices={devices}",
            f"trainer.strategy={strategy}",
        )
        assert r.returncode == 0, r.stderr[-3000:]
        if devices > 1:
            assert "MEMBER: 2/2" in r.stderr + r.stdout  # really two processes
        (metrics,) = (cwd / "logs" / "eval" / "runs").rglob("metrics.json")
        results.append(json.loads(metrics.read_text()))
    one, two = results
    assert one["protocol"]["num_videos"] == two["protocol"]["num_videos"] == 5
    for key, curve in one["curves"].items():
        assert curve["mean"] == pytest.approx(two["curves"][key]["mean"], abs=1e-5), key
        assert curve["ci95"] == pytest.approx(two["curves"][key]["ci95"], abs=1e-5), key


def _corrupt(tmp_path, kind, good):
    path = tmp_path / "run" / "checkpoints" / f"{kind}.ckpt"
    path.parent.mkdir(parents=True)
    (tmp_path / "run" / "config.yaml").write_text((good.parent.parent / "config.yaml").read_text())
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "other_version":
        ckpt = torch.load(good, weights_only=True)
        ckpt["svg_lightning"] = {"version": "0.0.1", "format": 0}
        torch.save(ckpt, path)
    elif kind == "foreign":
        torch.save({"state_dict": {}}, path)
    elif kind == "other_architecture":
        ckpt = torch.load(good, weights_only=True)
        ckpt["hyper_parameters"]["rnn_size"] = 16
        torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("missing", "does not exist"),
        ("truncated", "cannot be read as a PyTorch checkpoint"),
        ("other_version", "written by svg_lightning 0.0.1 (checkpoint format 0)"),
        ("foreign", "was not written by svg_lightning"),
        ("other_architecture", "does not match its architecture"),
    ],
)
def test_bad_checkpoints_are_named(tmp_path, run_dir, kind, needle):
    good = run_dir / "checkpoints" / "last.ckpt"
    path = tmp_path / "nope.ckpt" if kind == "missing" else _corrupt(tmp_path, kind, good)
    with pytest.raises(CheckpointError) as err:
        evaluate(eval_cfg(tmp_path, path))
    assert str(path) in str(err.value) and needle in str(err.value)


@pytest.mark.slow
def test_cli_reports_a_bad_checkpoint_without_traceback(tmp_path, run_dir):
    path = _corrupt(tmp_path, "truncated", run_dir / "checkpoints" / "last.ckpt")
    r = _eval_cli(tmp_path, f"ckpt_path={path}", *EVAL)
    assert r.returncode == 2 and str(path) in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_the_checksum_is_of_the_bytes_loaded_not_of_the_file_after(tmp_path, run_dir, monkeypatch):
    """A training still going replaces last.ckpt while it is evaluated: metrics.json must cite
    the bytes that were scored, so the file is hashed as read, never again after loading."""
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes())
    (tmp_path / "run" / "config.yaml").write_bytes((run_dir / "config.yaml").read_bytes())
    scored = sha256(ckpt)
    real = torch.load

    def load_while_training_saves(*args, **kwargs):
        if ckpt.read_bytes() != b"a newer checkpoint":
            ckpt.write_bytes(b"a newer checkpoint")  # the training's next save lands meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load_while_training_saves)
    metrics, _ = evaluate(eval_cfg(tmp_path, ckpt))
    assert sha256(ckpt) != scored  # the file did change under the evaluation
    assert metrics["protocol"]["checkpoint_sha256"] == scored


def test_missing_training_config_is_named(tmp_path, run_dir):
    """A checkpoint of an older version carries no training config; copied away from its run
    folder, the error says how to point at the config."""
    path = tmp_path / "lonely" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    del state["svg_lightning"]["train_config"]
    torch.save(state, path)
    with pytest.raises(Exception, match="train_config=PATH"):
        evaluate(eval_cfg(tmp_path, path))


def test_compare_overlays_runs(tmp_path, run_dir):
    compare = compare_main

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    for name in ("a", "b"):
        evaluate(eval_cfg(tmp_path / name, ckpt))
    out = tmp_path / "cmp.png"
    runs = [str(tmp_path / n / "out") for n in ("a", "b")]
    assert compare([*runs, "--out", str(out), "--labels", "lp", "lp-again"]) == 0
    assert out.stat().st_size > 0
    # Beside the plot: which evaluation each label is, with its checkpoint and numbers.
    shown = json.loads((tmp_path / "cmp.json").read_text())
    assert list(shown["runs"]) == ["lp", "lp-again"] and shown["plot"] == str(out)
    for name, entry in zip("ab", shown["runs"].values()):
        metrics = json.loads((tmp_path / name / "out" / "metrics.json").read_text())
        assert entry["metrics"] == str(tmp_path / name / "out" / "metrics.json")
        assert entry["protocol"]["checkpoint_sha256"] == sha256(ckpt)
        assert entry["summary"] == metrics["summary"]
    assert compare(runs) == 0  # by default the plot goes next to the inputs
    assert (tmp_path / "compare.png").stat().st_size > 0
    assert compare([str(tmp_path / "missing")]) == 2


def test_compare_warns_when_runs_were_scored_differently(tmp_path, run_dir, capsys):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    evaluate(eval_cfg(tmp_path / "a", ckpt))
    evaluate(eval_cfg(tmp_path / "b", ckpt, "eval.num_samples=2"))
    runs = [str(tmp_path / n / "out") for n in ("a", "b")]
    capsys.readouterr()
    assert compare_main(runs) == 0
    assert "differ in num_samples" in capsys.readouterr().err


def test_reference_ssim_is_opt_in_and_reported_beside(tmp_path, run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    evaluate(eval_cfg(tmp_path, ckpt, "eval.reference_ssim=true"))
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"ssim_ref_bestofN", "ssim_ref_copy_last", "ssim_ref_black"} <= set(m["summary"])
    assert "7x7 uniform window" in m["protocol"]["ssim_ref"]
    # The old definition inflates SSIM on sparse digit frames.
    assert m["summary"]["ssim_ref_black"]["mean"] > m["summary"]["ssim_black"]["mean"]


# --- LPIPS and FVD (random-weight AlexNet and I3D saved as the real formats) -----------------


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """A torchvision alexnet state dict (features only) and an I3D state dict, random weights."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None).state_dict()
    torch.save({k: v for k, v in alexnet.items() if k.startswith("features.")},
               root / ALEXNET_FILE)  # fmt: skip
    i3d = I3D()
    for m in i3d.modules():  # spread-out statistics, so random features differ between videos
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_var.uniform_(0.01, 0.1)
    torch.save(i3d.state_dict(), root / I3D_FILE)
    return root / ALEXNET_FILE, root / I3D_FILE


def perceptual(alexnet, i3d, *more):
    return (f"eval.lpips_backbone={alexnet}", f"eval.i3d={i3d}", "eval.num_videos=4",
            "eval.fvd_draws=2", *more)  # fmt: skip


@pytest.mark.slow
def test_lpips_and_fvd_are_written_recorded_and_compared(tmp_path, run_dir, weight_files, capsys):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    on = perceptual(*weight_files, "eval.lpips=true", "eval.fvd=true")
    m, paths = evaluate(eval_cfg(tmp_path / "a", ckpt, *on))
    s, pr = m["summary"], m["protocol"]
    for key in ("bestofN", "meanofN", "worstofN", "copy_last", "black"):
        assert len(m["curves"][f"lpips_{key}"]["mean"]) == 4, key
    best, mean, worst = (s[f"lpips_{k}"]["mean"] for k in ("bestofN", "meanofN", "worstofN"))
    assert (
        best - 1e-6 <= mean <= worst + 1e-6
    )  # lowest is best; a tiny model's samples nearly coincide
    assert len(s["fvd"]["draws"]) == 2 and s["fvd"]["mean"] > 0 and s["fvd"]["ci95"] >= 0
    alexnet, i3d = weight_files
    assert pr["fvd"]["weights"] == [{"file": str(i3d), "sha256": sha256(i3d)}]
    assert pr["fvd"]["draws"] == 2 and "I3D" in pr["fvd"]["rule"]
    assert [w["file"] for w in pr["lpips"]["weights"]] == [
        str(alexnet),
        str(lpips_files(alexnet)[1]),
    ]
    assert "lpips_bestofN_mean" in (tmp_path / "a" / "out" / "curves.csv").read_text()
    assert "FVD" in capsys.readouterr().out  # the printed table
    # Same seed, other batching: same draws, same numbers.
    again, _ = evaluate(eval_cfg(tmp_path / "b", ckpt, *on, "eval.batch_size=3"))
    assert again["summary"]["fvd"]["draws"] == pytest.approx(s["fvd"]["draws"], rel=1e-5)
    assert compare_main([str(tmp_path / "a" / "out"), str(tmp_path / "b" / "out")]) == 0
    table = capsys.readouterr().out
    assert "LPIPS" in table and "FVD" in table  # (narrow terminals wrap the headers)


def test_lpips_and_fvd_follow_the_protocol_and_missing_weights_stop_before_sampling(
    tmp_path, run_dir, weight_files, monkeypatch
):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    sampled = []
    monkeypatch.setattr(evaluate_mod, "run_best_of_n", lambda *a: sampled.append(1))
    missing = tmp_path / "nowhere" / I3D_FILE
    with pytest.raises(ConfigError, match=f"eval.fvd=true, but .*{missing}"):
        evaluate(eval_cfg(tmp_path, ckpt, *perceptual(weight_files[0], missing, "eval.fvd=true")))
    with pytest.raises(ConfigError, match="eval.lpips=true, but .*hub.*eval.lpips_backbone=PATH$"):
        evaluate(eval_cfg(tmp_path, ckpt, "eval.lpips=true", "eval.lpips_backbone=null"))
    with pytest.raises(ConfigError, match="eval.fvd=true, but FVD's I3D needs videos of at least"):
        evaluate(eval_cfg(tmp_path, ckpt, *perceptual(*weight_files, "eval.fvd=true",
                                                      "eval.n_future=3")))  # fmt: skip
    with pytest.raises(ConfigError, match="eval.lpips"):
        evaluate(eval_cfg(tmp_path, ckpt, "eval.lpips=maybe"))
    assert not sampled
    monkeypatch.undo()
    # null: SM-MNIST's protocol has neither (SRVP reports them for KTH and BAIR).
    m, _ = evaluate(eval_cfg(tmp_path / "auto", ckpt, *perceptual(*weight_files)))
    assert "fvd" not in m["summary"] and "lpips_bestofN" not in m["summary"]
    assert m["protocol"]["lpips"] is None and m["protocol"]["fvd"] is None


def test_weight_files_on_by_protocol_are_skipped_with_a_note_when_missing(capsys):
    def missing():
        raise MissingWeightsError("put rgb_imagenet.pt at /x", "path")

    assert evaluate_mod.weight_files(None, True, "FVD", missing, None) is None
    # The loader's argument (path=) becomes the command's setting.
    note = "FVD not computed (eval.fvd=null): put rgb_imagenet.pt at /x, or give the file's path "
    assert note + "with eval.i3d=PATH" in capsys.readouterr().err
    assert evaluate_mod.weight_files(None, False, "FVD", missing, None) is None
    assert evaluate_mod.weight_files(False, True, "FVD", missing, None) is None
    with pytest.raises(ConfigError, match="eval.fvd=true, but put rgb_imagenet.pt at /x"):
        evaluate_mod.weight_files(True, False, "FVD", missing, None)
    assert evaluate_mod.weight_files(None, True, "FVD", lambda: "found", None) == "found"


def test_sample_chunk_auto_is_resolved_for_the_device_and_recorded(tmp_path, run_dir):
    """auto: large calls on a GPU, small ones on a CPU (faster there); metrics.json records the
    rows that ran. The scores do not depend on it (test_evaluation_is_reproducible)."""
    assert sample_chunk("auto", torch.device("cuda")) == AUTO_SAMPLE_CHUNK["cuda"] == 800
    assert sample_chunk("auto", torch.device("cpu")) == AUTO_SAMPLE_CHUNK["cpu"] == 64
    assert sample_chunk(None, torch.device("cpu")) is None and sample_chunk(7, None) == 7
    evaluate(eval_cfg(tmp_path, run_dir / "checkpoints" / "last.ckpt", "eval.sample_chunk=auto"))
    prov = json.loads((tmp_path / "out" / "metrics.json").read_text())["provenance"]
    assert prov["eval"]["sample_chunk"] == 64
    with pytest.raises(ConfigError, match="eval.sample_chunk='many' must be an integer"):
        evaluate(eval_cfg(tmp_path / "bad", run_dir / "checkpoints" / "last.ckpt",
                          "eval.sample_chunk=many"))  # fmt: skip
