import torch

from svg_lightning.evaluation import score_predictions, select
from svg_lightning.module import summarize, unique_first


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
    torch.testing.assert_close(out["best"], torch.tensor([[0.6, 0.9], [0.9, 0.8]]))
    torch.testing.assert_close(out["worst"], torch.tensor([[0.5, 0.5], [0.1, 0.2]]))
    torch.testing.assert_close(out["mean"], scores.mean(1))


def test_reference_predictors_are_scored_on_the_same_frames():
    target = torch.zeros(2, 3, 1, 16, 16)
    target[:, :, :, 4:8, 4:8] = 1
    cond_last = target[:, 0]
    perfect = target[:, None].repeat(1, 2, 1, 1, 1, 1)
    out = score_predictions(perfect, target, cond_last)
    assert torch.all(out["copy_last_psnr"] == 100)  # a still digit: copy-last is exact
    assert torch.allclose(out["ssim_best"], torch.ones(2, 3))
    assert torch.all(out["black_ssim"] < 1) and torch.all(out["black_psnr"] < 100)


def test_unique_first_drops_padded_duplicates():
    index = torch.tensor([3, 0, 1, 2, 3, 0])  # a distributed sampler padded with 3 and 0
    values, first = unique_first(index)
    assert values.tolist() == [0, 1, 2, 3] and first.tolist() == [1, 2, 3, 0]


def test_summarize_mean_ci_and_curve():
    curves = torch.tensor([[1.0, 3.0], [3.0, 5.0]])
    s = summarize(curves)
    assert s["mean"] == 3.0 and s["per_step"] == [2.0, 4.0]
    assert abs(s["ci95"] - 1.96 * (2**0.5) / 2**0.5) < 1e-9  # std of [2, 4] = sqrt(2)
