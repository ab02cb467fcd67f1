"""``BestOfN``: the evaluation protocol as a torchmetrics Metric."""

import math
import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from svg_lightning.evaluate.report import build_metrics
from svg_lightning.metrics import BestOfN, BestOfNResult, frechet_distance, i3d_features, lpips
from svg_lightning.metrics.best_of_n import (
    METRICS,
    REFERENCE_METRICS,
    Chunk,
    curve_names,
    fvd_picks,
    score_chunks,
)
from svg_lightning.metrics.perceptual import LPIPSAlex

SIZE = 16  # the smallest frames the 11 x 11 SSIM window fits, with room to spare


def constant_frames(psnr_db: torch.Tensor) -> torch.Tensor:
    """Frames of constant value v scoring ``psnr_db`` against black: PSNR = -20 log10(v)."""
    value = 10 ** (-psnr_db / 20)
    return value[..., None, None, None].expand(*psnr_db.shape, 1, SIZE, SIZE).clone()


def ssim_vs_black(psnr_db: torch.Tensor) -> torch.Tensor:
    """SSIM of a constant frame v against black: luminance term C1 / (v^2 + C1), C1 = 0.01^2;
    the contrast-structure term is C2 / C2 = 1 (no variance in either frame)."""
    return 1e-4 / (10 ** (-psnr_db / 10) + 1e-4)


def random_videos(n=5, s=3, t=3, seed=0, p=2, size=SIZE):
    g = torch.Generator().manual_seed(seed)
    samples = torch.rand(n, s, t, 1, size, size, generator=g)
    target = torch.rand(n, t, 1, size, size, generator=g)
    cond = torch.rand(n, p, 1, size, size, generator=g)
    return samples, target, cond, torch.arange(n) * 3 + 1  # video indices need not be 0..n-1


class TinyI3D(torch.nn.Module):
    """Stands in for I3D where only the bookkeeping is tested: (N, 3, T, 224, 224) -> (N, 400)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 2 * 4 * 4, 400)

    def forward(self, x):
        return self.proj(F.adaptive_avg_pool3d(x, (2, 4, 4)).flatten(1))


def perceptual_nets(seed=0) -> tuple[LPIPSAlex, TinyI3D]:
    """An LPIPS network with random backbone and (non-negative) linear weights, and a stand-in
    I3D; the same for the same seed, in any process."""
    torch.manual_seed(seed)
    net = LPIPSAlex()
    for conv in net.lin:
        conv.weight.uniform_(0, 1)
    return net, TinyI3D().eval()


PERCEPTUAL = {"n": 5, "s": 3, "t": 3, "p": 6, "size": 32}  # 9-frame 32 x 32 videos: LPIPS, I3D


def assert_same_result(a: BestOfNResult, b: BestOfNResult, atol=0.0):
    assert torch.equal(a.index, b.index) and a.names == b.names
    for name in a.names:
        torch.testing.assert_close(a.per_video[name], b.per_video[name], atol=atol, rtol=0)
        assert a.mean[name] == pytest.approx(b.mean[name], abs=atol, nan_ok=True), name
        assert a.ci95[name] == pytest.approx(b.ci95[name], abs=atol, nan_ok=True), name
        assert a.step_mean[name] == pytest.approx(b.step_mean[name], abs=atol, nan_ok=True)
        assert a.step_ci95[name] == pytest.approx(b.step_ci95[name], abs=atol, nan_ok=True)


def test_selection_by_time_average_per_metric_against_hand_computed_scores():
    # PSNR (dB) of every (video, sample, step) against black ground truth. Video 7: PSNR picks
    # sample 1 (average 30) but SSIM, which saturates differently, picks sample 0 (the 40 dB
    # frame counts most); sample 2 is the worst for both. Video 3: sample 0 best, 2 worst.
    db = torch.tensor(
        [
            [[40.0, 10.0], [30.0, 30.0], [10.0, 20.0]],
            [[20.0, 20.0], [10.0, 20.0], [10.0, 10.0]],
        ]
    )
    target = torch.zeros(2, 2, 1, SIZE, SIZE)
    cond = constant_frames(torch.full((2, 2), 40.0))  # copy-last scores 40 dB on every frame
    metric = BestOfN()
    metric.update(constant_frames(db), target, torch.tensor([7, 3]), cond=cond)
    r = metric.compute()

    assert r.index.tolist() == [3, 7] and r.num_videos == 2  # ordered by video index
    order = [1, 0]  # rows of ``db`` in index order
    expect = {
        "psnr_bestofN": torch.tensor([[20.0, 20.0], [30.0, 30.0]]),
        "psnr_worstofN": torch.tensor([[10.0, 10.0], [10.0, 20.0]]),
        "psnr_meanofN": db[order].mean(1),
        "ssim_bestofN": ssim_vs_black(torch.tensor([[20.0, 20.0], [40.0, 10.0]])),
        "ssim_worstofN": ssim_vs_black(torch.tensor([[10.0, 10.0], [10.0, 20.0]])),
        "ssim_meanofN": ssim_vs_black(db[order]).mean(1),
        "psnr_copy_last": torch.full((2, 2), 40.0),
        "psnr_black": torch.full((2, 2), 100.0),  # an exact match: the 1e-10 MSE floor
        "ssim_black": torch.ones(2, 2),
    }
    for name, curve in expect.items():
        torch.testing.assert_close(r.per_video[name], curve, atol=2e-4, rtol=1e-4, msg=name)
    # Time averages of the best samples 20 and 30 dB: mean 25, CI 1.96 * sqrt(50) / sqrt(2).
    assert r.mean["psnr_bestofN"] == pytest.approx(25.0, abs=1e-4)
    assert r.ci95["psnr_bestofN"] == pytest.approx(9.8, abs=1e-4)
    assert r.step_mean["psnr_bestofN"] == pytest.approx([25.0, 25.0], abs=1e-4)
    assert r.names == curve_names(METRICS)


def test_update_is_score_chunks_then_update_curves():
    samples, target, cond, index = random_videos()
    whole = BestOfN()
    whole.update(samples, target, index, cond=cond)
    # Chunks of 4 rows of the 15 (video, sample) pairs cut across videos, as in our evaluation.
    rows = torch.arange(15)
    chunks = [Chunk(r, samples.flatten(0, 1)[r]) for r in rows.split(4)]
    curves = score_chunks(chunks, cond, target, samples.shape[1]).curves
    assert list(curves) == curve_names(METRICS)
    chunked = BestOfN()
    chunked.update_curves(curves, index)
    assert_same_result(whole.compute(), chunked.compute(), atol=1e-6)


def test_padded_duplicates_are_dropped_keeping_the_first():
    metric = BestOfN()
    tag = lambda index, batch: (index * 10.0 + batch)[:, None].expand(-1, 2)
    for batch, index in enumerate([torch.tensor([3, 0, 1]), torch.tensor([2, 3, 0])]):
        metric.update_curves({"psnr_bestofN": tag(index, batch)}, index)
    r = metric.compute()
    assert r.index.tolist() == [0, 1, 2, 3] and r.names == ["psnr_bestofN"]
    assert r.per_video["psnr_bestofN"][:, 0].tolist() == [0.0, 10.0, 21.0, 30.0]


def test_numbers_do_not_depend_on_batching_or_order():
    samples, target, cond, index = random_videos(n=7)
    one = BestOfN()
    one.update(samples, target, index, cond=cond)
    split = BestOfN()
    perm = torch.tensor([4, 0, 6, 2, 1, 5, 3])
    for rows in perm.split([3, 1, 3]):
        split.update(samples[rows], target[rows], index[rows], cond=cond[rows])
    assert_same_result(one.compute(), split.compute(), atol=1e-6)


def test_baselines_and_reference_ssim_names():
    samples, target, cond, index = random_videos(n=2)
    plain = BestOfN()
    plain.update(samples, target, index)  # no cond: no copy-last baseline
    assert [n for n in plain.compute().names if "copy_last" in n] == []
    ref = BestOfN(reference_ssim=True)
    ref.update(samples, target, index, cond=cond)
    assert ref.compute().names == curve_names(REFERENCE_METRICS)
    assert "ssim_ref_bestofN" in ref.compute().names


def test_one_video_keeps_its_shapes():
    # torchmetrics squeezes one-element tensors of dict or dataclass results; ours are kept.
    metric = BestOfN()
    metric.update_curves({"ssim_bestofN": torch.tensor([[0.5]])}, torch.tensor([4]))
    r = metric.compute()
    assert r.index.shape == (1,) and r.per_video["ssim_bestofN"].shape == (1, 1)
    assert r.mean["ssim_bestofN"] == 0.5 and math.isnan(r.ci95["ssim_bestofN"])


def test_update_curves_invalidates_the_cached_result(recwarn):
    metric = BestOfN()
    metric.update_curves({"ssim_bestofN": torch.ones(2, 3)}, torch.tensor([0, 1]))
    assert metric.compute().num_videos == 2
    metric.update_curves({"ssim_bestofN": torch.zeros(1, 3)}, torch.tensor([2]))
    r = metric.compute()
    assert r.num_videos == 3 and r.mean["ssim_bestofN"] == pytest.approx(2 / 3)
    assert not [w for w in recwarn if "before the ``update``" in str(w.message)]
    metric.reset()
    with pytest.raises(ValueError, match="no videos"):
        metric.compute()


def test_bad_inputs_are_named():
    samples, target, cond, index = random_videos(n=2)
    metric = BestOfN()
    with pytest.raises(ValueError, match="samples"):
        metric.update(samples[:, 0], target, index)
    with pytest.raises(ValueError, match="cond"):
        metric.update(samples, target, index, cond=cond[:1])
    with pytest.raises(ValueError, match="index"):
        metric.update(samples, target, index[:1])
    with pytest.raises(ValueError, match="unknown curves"):
        metric.update_curves({"lpips_bestofN": torch.ones(2, 3)}, index)
    metric.update(samples, target, index, cond=cond)
    metric.update(samples, target, index + 100)  # without cond this time
    with pytest.raises(ValueError, match="copy_last was scored for 2 of 4 videos"):
        metric.compute()


def test_metrics_document_uses_the_metric_numbers():
    samples, target, cond, index = random_videos()
    metric = BestOfN()
    metric.update(samples, target, index, cond=cond)
    r = metric.compute()
    doc = build_metrics(r, {"dataset": "x", "n_past": 2})
    assert doc["protocol"]["num_videos"] == 5
    assert {k: doc[k] for k in ("summary", "curves")} == r.to_dict()
    assert list(doc["summary"]) == curve_names(METRICS)  # the order of metrics.json and the CSV


# --- LPIPS and FVD ----------------------------------------------------------------------------


def test_lpips_best_is_the_lowest_time_average_and_baselines_get_it():
    samples, target, cond, index = random_videos(**PERCEPTUAL)
    lpips_net, _ = perceptual_nets()
    metric = BestOfN(lpips_net=lpips_net)
    metric.update(samples, target, index, cond=cond)
    r = metric.compute()
    direct = lpips(samples, target[:, None].expand_as(samples), lpips_net)  # (B, S, T)
    best = direct.mean(-1).argmin(1)
    torch.testing.assert_close(r.per_video["lpips_bestofN"], direct[torch.arange(5), best])
    torch.testing.assert_close(r.per_video["lpips_meanofN"], direct.mean(1))
    assert r.mean["lpips_bestofN"] < r.mean["lpips_meanofN"] < r.mean["lpips_worstofN"]
    copy_last = lpips(cond[:, -1:].expand_as(target), target, lpips_net)
    torch.testing.assert_close(r.per_video["lpips_copy_last"], copy_last)
    assert r.names == curve_names(METRICS | {"lpips": None})
    assert r.mean["ssim_bestofN"] == BestOfN().forward(samples, target, index).mean["ssim_bestofN"]


def test_fvd_draws_one_seeded_sample_per_video_and_ignores_chunking():
    samples, target, cond, index = random_videos(**PERCEPTUAL)
    _, i3d = perceptual_nets()
    whole = BestOfN(i3d_net=i3d, fvd_draws=4, seed=7)
    whole.update(samples, target, index, cond=cond)
    r = whole.compute()

    picks = fvd_picks(index, 3, 4, seed=7)
    assert torch.equal(picks[2:], fvd_picks(index[2:], 3, 4, seed=7))  # per video, not per batch
    assert not torch.equal(picks, fvd_picks(index, 3, 4, seed=8))
    real = i3d_features(torch.cat([cond, target], 1), i3d)
    expected = []
    for d in range(4):
        drawn = samples[torch.arange(5), picks[:, d]]
        expected.append(frechet_distance(real, i3d_features(torch.cat([cond, drawn], 1), i3d)))
    assert r.fvd["draws"] == pytest.approx(expected, rel=1e-4)
    assert r.fvd["mean"] == pytest.approx(sum(expected) / 4, rel=1e-4) and r.fvd["ci95"] > 0
    assert r.to_dict()["summary"]["fvd"] == r.fvd

    # Scored chunk by chunk (chunks cut across videos), as the evaluation does: same numbers.
    frames = samples.flatten(0, 1)
    chunks = [Chunk(rows, frames[rows]) for rows in torch.arange(15).split(4)]
    scores = score_chunks(chunks, cond, target, 3, METRICS, whole.fvd_for(index, 3))
    chunked = BestOfN(i3d_net=i3d, fvd_draws=4, seed=7)
    chunked.update_curves(scores.curves, index, scores.fvd)
    assert chunked.compute().fvd["draws"] == pytest.approx(expected, rel=1e-4)


def test_fvd_needs_whole_videos_and_every_batch_features():
    samples, target, cond, index = random_videos(**PERCEPTUAL)
    _, i3d = perceptual_nets()
    metric = BestOfN(i3d_net=i3d)
    with pytest.raises(ValueError, match="conditioning frames"):
        metric.update(samples, target, index)
    with pytest.raises(ValueError, match="give the FVD features"):
        metric.update_curves({"ssim_bestofN": torch.ones(5, 3)}, index)
    scores = score_chunks([Chunk(torch.arange(15), samples.flatten(0, 1))], cond, target, 3,
                          METRICS, metric.fvd_for(index, 3))  # fmt: skip
    with pytest.raises(ValueError, match="without an I3D network"):
        BestOfN().update_curves(scores.curves, index, scores.fvd)


# --- two processes ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_dict(r: BestOfNResult) -> dict:
    return {k: getattr(r, k) for k in BestOfNResult.__slots__}


def _ddp_worker(rank: int, port: int, out: str, perceptual: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
        timeout=timedelta(seconds=30),
    )  # fmt: skip
    try:
        samples, target, cond, index = random_videos(**(PERCEPTUAL if perceptual else {}))
        # 5 videos on 2 processes: rank 0 gets 0, 2, 4; rank 1 gets 1, 3 and 0 again (padding).
        mine = torch.tensor(list(DistributedSampler(range(5), 2, rank, shuffle=False)))
        metric = _metric(perceptual)
        if rank == 0:  # two batches through update
            for rows in mine.split(2):
                metric.update(samples[rows], target[rows], index[rows], cond=cond[rows])
        else:  # one batch, scored in chunks, through update_curves
            frames = samples[mine].flatten(0, 1)
            chunks = [Chunk(r, frames[r]) for r in torch.arange(len(frames)).split(4)]
            scores = score_chunks(chunks, cond[mine], target[mine], samples.shape[1],
                                  metric.metric_fns, metric.fvd_for(index[mine], 3))  # fmt: skip
            metric.update_curves(scores.curves, index[mine], scores.fvd)
        torch.save(_as_dict(metric.compute()), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _metric(perceptual: bool) -> BestOfN:
    if not perceptual:
        return BestOfN()
    lpips_net, i3d = perceptual_nets()
    return BestOfN(lpips_net=lpips_net, i3d_net=i3d, fvd_draws=3)


@pytest.mark.slow
@pytest.mark.parametrize("perceptual", [False, True], ids=["ssim_psnr", "lpips_fvd"])
def test_two_processes_give_the_single_process_numbers(tmp_path, perceptual):
    start = time.monotonic()
    ctx = mp.spawn(
        _ddp_worker, args=(_free_port(), str(tmp_path), perceptual), nprocs=2, join=False
    )
    while not ctx.join(timeout=5):
        if time.monotonic() - start > 120:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two processes did not finish in 120 s")
    samples, target, cond, index = random_videos(**(PERCEPTUAL if perceptual else {}))
    single = _metric(perceptual)
    single.update(samples, target, index, cond=cond)
    expected = single.compute()
    for rank in (0, 1):  # every process gets the gathered result
        got = BestOfNResult(**torch.load(tmp_path / f"rank{rank}.pt", weights_only=False))
        assert got.num_videos == 5
        assert_same_result(expected, got, atol=1e-6)
        if perceptual:
            assert "lpips_bestofN" in got.names
            assert got.fvd["draws"] == pytest.approx(expected.fvd["draws"], rel=1e-5)
