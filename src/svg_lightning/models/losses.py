"""The SVG objective (the paper's Eq. 3 with the beta weighting of Sec. 3), in float32 whatever
the autocast dtype."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def gaussian_kl(
    mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """Elementwise KL(N(mu1, s1^2) || N(mu2, s2^2)):
    log(s2/s1) + (s1^2 + (mu1-mu2)^2) / (2 s2^2) - 1/2."""
    return (
        0.5 * (logvar2 - logvar1) + (logvar1.exp() + (mu1 - mu2) ** 2) / (2 * logvar2.exp()) - 0.5
    )


def kl_per_video_step(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    prior_mu: torch.Tensor | None = None,
    prior_logvar: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(q_phi(z_t | x_1:t) || prior) summed over z -> (B, T-1), in float32. The prior is the
    learned p_psi(z_t | x_1:t-1) when given (SVG-LP), else N(0, I) (SVG-FP)."""
    mu, logvar = mu.float(), logvar.float()
    if prior_mu is None:
        prior_mu, prior_logvar = torch.zeros_like(mu), torch.zeros_like(logvar)
    return gaussian_kl(mu, logvar, prior_mu.float(), prior_logvar.float()).sum(-1)


@dataclass
class LossTerms:
    loss: torch.Tensor
    mse: torch.Tensor
    kl: torch.Tensor
    kl_per_step: torch.Tensor  # (T-1,), zeros for the deterministic model


def svg_loss(
    x_hat: torch.Tensor,
    x: torch.Tensor,
    beta: float,
    mu: torch.Tensor | None = None,
    logvar: torch.Tensor | None = None,
    prior_mu: torch.Tensor | None = None,
    prior_logvar: torch.Tensor | None = None,
) -> LossTerms:
    """sum_t mean((x_hat_t - x_t)^2) + beta * sum_t mean_batch(sum_z KL_t), over all T-1 steps.

    ``x_hat``/``x``: (B, T-1, C, H, W). ``mu``/``logvar``: posterior (B, T-1, z), None for the
    deterministic model. ``prior_*``: learned prior, None for N(0, I) (SVG-FP).
    """
    mse_per_step = (x_hat.float() - x.float()).pow(2).mean(dim=(0, 2, 3, 4))
    if mu is None:
        kl_per_step = torch.zeros_like(mse_per_step)
    else:
        kl_per_step = kl_per_video_step(mu, logvar, prior_mu, prior_logvar).mean(0)
    mse, kl_total = mse_per_step.sum(), kl_per_step.sum()
    return LossTerms(mse + beta * kl_total, mse, kl_total, kl_per_step)
