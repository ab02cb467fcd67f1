import torch

from svg_lightning.evaluate.report import build_metrics
from svg_lightning.metrics.best_of_n import (
    baseline_scores,
    select,
    summarize,
    unique_first,
    video_noise,
)


def test_best_of_n_picks_by_time_average_per_video():
    # 2 videos, 3 samples, 2 steps. Video 0: sample 1 has the best average although sample 2 has
    # the best first step and sample 0 the worst average; video 1: sample 0 best, sample 2 worst.
    scores = torch.tensor(
        [
            [[0.5, 0.5], [0.6, 0.9], [0.95, 0.1]],
            [[0.9, 0.8], [0.5, 0.5], [0.1, 0.2]],
        ]
    )
    out = select(scores)
    torch.testing.assert_close(out["bestofN"], torch.tensor([[0.6, 0.9], [0.9, 0.8]]))
    torch.testing.assert_close(out["worstofN"], torch.tensor([[0.5, 0.5], [0.1, 0.2]]))
    torch.testing.assert_close(out["meanofN"], scores.mean(1))


def test_reference_predictors_are_scored_on_the_same_frames():
    target = torch.zeros(2, 3, 1, 16, 16)
    target[:, :, :, 4:8, 4:8] = 1
    cond = target[:, :2]
    out = baseline_scores(cond, target)
    assert torch.all(out["psnr_copy_last"] == 100)  # a still digit: copy-last is exact
    assert torch.all(out["ssim_copy_last"] > 0.9999)
    assert torch.all(out["ssim_black"] < 1) and torch.all(out["psnr_black"] < 100)
    assert out["psnr_black"].shape == (2, 3)
    assert set(baseline_scores(None, target)) == {"ssim_black", "psnr_black"}  # no cond given


def test_video_noise_depends_only_on_seed_and_video():
    a = video_noise(torch.tensor([4, 9]), 3, 5, 2, seed=0)
    b = video_noise(torch.tensor([9]), 3, 5, 2, seed=0)
    torch.testing.assert_close(a[1], b[0])
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a, video_noise(torch.tensor([4, 9]), 3, 5, 2, seed=1))


def test_unique_first_drops_padded_duplicates():
    index = torch.tensor([3, 0, 1, 2, 3, 0])  # a distributed sampler padded with 3 and 0
    values, first = unique_first(index)
    assert values.tolist() == [0, 1, 2, 3] and first.tolist() == [1, 2, 3, 0]


def test_metrics_document_mean_ci_and_curves():
    result = summarize(
        {"ssim_bestofN": torch.tensor([[1.0, 3.0], [3.0, 5.0]])}, torch.tensor([0, 1])
    )
    m = build_metrics(result, {"dataset": "smmnist", "n_past": 5, "n_future": 2})
    s = m["summary"]["ssim_bestofN"]
    assert s["mean"] == 3.0 and abs(s["ci95"] - 1.96) < 1e-9  # std of [2, 4] = sqrt(2)
    assert m["curves"]["ssim_bestofN"]["mean"] == [2.0, 4.0]
    assert m["protocol"]["num_videos"] == 2 and "valid region" in m["protocol"]["ssim"]
    assert "index" not in m["summary"]
