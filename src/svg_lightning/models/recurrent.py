"""The frame predictor and the Gaussian LSTMs (posterior q_phi, prior p_psi) of the paper's Sec. 3.

Each runs ``nn.LSTM`` over a ``(B, L, features)`` sequence and takes/returns its ``(h, c)`` state,
so teacher-forced training runs a whole sequence in one call and generation steps with ``L = 1``.
``nn.LSTM`` with ``n`` layers has exactly the parameters of ``n`` stacked ``nn.LSTMCell``s (same
gate order, two bias vectors), hence the same function and parameter count as the reference.
"""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor] | None


class FramePredictor(nn.Module):
    """Linear embed (no activation) -> stacked LSTM -> Linear -> Tanh."""

    def __init__(self, in_dim: int, out_dim: int, rnn_size: int, n_layers: int):
        super().__init__()
        self.embed = nn.Linear(in_dim, rnn_size)
        self.lstm = nn.LSTM(rnn_size, rnn_size, n_layers, batch_first=True)
        self.output = nn.Sequential(nn.Linear(rnn_size, out_dim), nn.Tanh())

    def forward(self, x: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        out, state = self.lstm(self.embed(x), state)
        return self.output(out), state


class GaussianLSTM(nn.Module):
    """Linear embed -> stacked LSTM -> (mu, logvar) heads.

    Posterior q_phi(z_t | x_{1:t}) or learned prior p_psi(z_t | x_{1:t-1}), by what it is fed."""

    def __init__(self, in_dim: int, z_dim: int, rnn_size: int, n_layers: int):
        super().__init__()
        self.embed = nn.Linear(in_dim, rnn_size)
        self.lstm = nn.LSTM(rnn_size, rnn_size, n_layers, batch_first=True)
        self.mu = nn.Linear(rnn_size, z_dim)
        self.logvar = nn.Linear(rnn_size, z_dim)

    def forward(
        self, x: torch.Tensor, state: State = None
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        out, state = self.lstm(self.embed(x), state)
        return self.mu(out), self.logvar(out), state


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) unless given."""
    eps = torch.randn_like(mu) if eps is None else eps.to(mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps
