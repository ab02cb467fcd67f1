"""The reference training step, frame by frame: the baseline our batched step is timed against.

Written from the spec (docs of the reference algorithm, not its code): at every step t = 1..T-1
the reference calls the encoder on x_{t-1} and again on x_t (so SVG-LP encodes 2(T-1) frames),
steps the posterior, prior and frame predictor once, each a stack of ``nn.LSTMCell``, and decodes
one frame, concatenating the skips to the decoder's feature maps (``decode``). Every call sees
the B frames of one time step, so each BatchNorm layer normalises with that step's statistics
(spec Sec. 3, quirk 3). The loss is the paper's Eq. 3 as the reference sums it (``svg_loss``).
The cells share their weights with our ``nn.LSTM`` layers, so both steps train the same
parameters. tests/test_bn_stats.py checks that this step computes our training step's function."""

from __future__ import annotations

import torch
from torch import nn

from svg_lightning.models.losses import LossTerms
from svg_lightning.models.svg import SVG, Latents, TeacherForced, skip_source


def cells(lstm: nn.LSTM) -> nn.ModuleList:
    """One ``nn.LSTMCell`` per layer of ``lstm``, holding the same Parameter objects."""
    out = nn.ModuleList()
    for k in range(lstm.num_layers):
        cell = nn.LSTMCell(lstm.input_size if k == 0 else lstm.hidden_size, lstm.hidden_size)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(cell, name, getattr(lstm, f"{name}_l{k}"))
        out.append(cell)
    return out


class CellStack(nn.Module):
    """A recurrent module of ours (``embed``, ``lstm``, heads) stepped one frame at a time."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module, self.cells = module, cells(module.lstm)

    def forward(self, x: torch.Tensor, state: list | None) -> tuple[torch.Tensor, list]:
        h = self.module.embed(x)
        state = state or [None] * len(self.cells)
        new = []
        for cell, s in zip(self.cells, state):
            hc = cell(h, s)
            new.append(hc)
            h = hc[0]
        return h, new


def decode(model: SVG, g: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
    """The reference's decoder call: every stage convolves cat([feature, skip]) with its whole
    weight. Our decoder computes the same function with the convolution split in two halves, the
    skip half once per skip frame (``backbones._SkipInput``); the baseline keeps the reference's
    form, one concatenation and one convolution per stage and call."""
    dec = model.decoder
    d = dec.uncode(g[:, :, None, None])
    for stage, skip in zip(dec.stages, reversed(skips)):
        d = stage(torch.cat([dec.up(d), skip], 1))
    return torch.sigmoid(d)


def reference_pass(
    model: SVG, x: torch.Tensor, n_past: int, eps: torch.Tensor | None = None
) -> TeacherForced:
    """The predictions and latent distributions of x (B, T, C, H, W) as the reference's training
    step computes them; ``eps`` (B, T-1, z) fixes the posterior's standard-normal draws."""
    lp = model.variant == "lp"
    post = CellStack(model.posterior) if model.stochastic else None
    prior = CellStack(model.prior) if lp else None
    pred = CellStack(model.frame_predictor)
    s_post = s_prior = s_pred = None
    # SVG-LP encodes x_{t-1} and x_t at every step; SVG-FP each frame once, in order (spec Sec. 3).
    feats = {} if lp else {f: model.encoder(x[:, f]) for f in range(x.shape[1])}
    preds, mus, logvars, p_mus, p_logvars = [], [], [], [], []
    for t in range(1, x.shape[1]):
        if lp:
            feats[t - 1] = model.encoder(x[:, t - 1])
            h_t = model.encoder(x[:, t])[0]
        else:
            h_t = feats[t][0]
        h_prev, skips = feats[t - 1][0], feats[skip_source(t, n_past, model.skip)][1]
        inp = h_prev
        if post is not None:
            out, s_post = post(h_t, s_post)
            mu, logvar = model.posterior.mu(out), model.posterior.logvar(out)
            e = torch.randn_like(mu) if eps is None else eps[:, t - 1]
            z = mu + torch.exp(0.5 * logvar) * e
            mus.append(mu)
            logvars.append(logvar)
            inp = torch.cat([h_prev, z], 1)
            if prior is not None:
                out, s_prior = prior(h_prev, s_prior)
                p_mus.append(model.prior.mu(out))
                p_logvars.append(model.prior.logvar(out))
        out, s_pred = pred(inp, s_pred)
        preds.append(decode(model, model.frame_predictor.output(out), skips))
    stack = lambda xs: torch.stack(xs, 1) if xs else None
    latents = Latents(stack(mus), stack(logvars), stack(p_mus), stack(p_logvars))
    return TeacherForced(torch.stack(preds, 1), latents)


def reference_step(
    model: SVG, x: torch.Tensor, n_past: int, beta: float, eps: torch.Tensor | None = None
) -> LossTerms:
    """The training loss of x (B, T, C, H, W) as the reference computes it (``reference_pass``)."""
    return reference_pass(model, x, n_past, eps).loss(x, beta)


@torch.no_grad()
def reference_generate(
    model: SVG, cond: torch.Tensor, n_future: int, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """One future of every video of ``cond`` (B, n_past, C, H, W) -> (B, n_future, C, H, W), as
    the reference's generation script makes sample index s of a whole test batch in one call:
    frame by frame; on the conditioning frames the encoder runs on the input and again on the
    target frame (twice per step), the posterior gives z (a sample for SVG-LP, its mean for
    SVG-FP, as ``model.warmup_mean``) and the prior and frame predictor step; then z comes from
    the prior (LP) or N(0, I) (FP), each frame is decoded with the skips concatenated
    (``decode``) and encoded again as the next input. ``eps`` (B, n_past-1+n_future, z) fixes
    the standard-normal draws, laid out as ``SVG.iter_samples``'s noise for one sample. The
    BatchNorm mode is the caller's: the script leaves the encoder and decoder in train mode."""
    n_past, lp = cond.shape[1], model.variant == "lp"
    post = CellStack(model.posterior) if model.stochastic else None
    prior = CellStack(model.prior) if lp else None
    pred = CellStack(model.frame_predictor)
    draw = lambda i, like: torch.randn_like(like) if eps is None else eps[:, i - 1].to(like)
    s_post = s_prior = s_pred = None
    x_in, frames = cond[:, 0], []
    for i in range(1, n_past + n_future):
        h, skips_in = model.encoder(x_in)
        if skip_source(i, n_past, model.skip) == i - 1:
            skips = skips_in
        inp, z = h, None
        if i < n_past:
            if post is not None:
                out, s_post = post(model.encoder(cond[:, i])[0], s_post)
                mu, logvar = model.posterior.mu(out), model.posterior.logvar(out)
                z = mu if model.warmup_mean else mu + torch.exp(0.5 * logvar) * draw(i, mu)
            if prior is not None:
                _, s_prior = prior(h, s_prior)
        elif prior is not None:
            out, s_prior = prior(h, s_prior)
            mu, logvar = model.prior.mu(out), model.prior.logvar(out)
            z = mu + torch.exp(0.5 * logvar) * draw(i, mu)
        elif post is not None:  # SVG-FP: z ~ N(0, I)
            z = draw(i, h.new_empty(h.shape[0], model.z_dim))
        if z is not None:
            inp = torch.cat([h, z], 1)
        out, s_pred = pred(inp, s_pred)
        if i < n_past:
            x_in = cond[:, i]
        else:
            x_in = decode(model, model.frame_predictor.output(out), skips)
            frames.append(x_in)
    return torch.stack(frames, 1)
