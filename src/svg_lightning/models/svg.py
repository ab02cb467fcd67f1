"""The SVG networks: teacher-forced training pass and batched sampling (the paper's Sec. 3).

``variant``: ``lp`` (learned prior p_psi), ``fp`` (fixed prior N(0, I)) or ``deterministic``
(no z; the predictor sees h only).

Frame indices are 0-based: step ``t`` predicts frame ``t`` from frame ``t-1`` (t = 1..T-1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import groupby

import torch
from torch import nn

from svg_lightning.models.backbones import build_backbone, cpu_kernel_choice
from svg_lightning.models.batchnorm import SAMPLING_BN_STATS, TRAINING_BN_STATS, step_statistics
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.losses import LossTerms, svg_loss
from svg_lightning.models.recurrent import FramePredictor, GaussianLSTM, reparameterize

# ``time_chunk="auto"`` on a CPU keeps a call's widest activation near this size. Paper SM-MNIST
# net at batch 16: 2-5 steps per call (8-21 MB) were fastest and 7 (29 MB) slower; BAIR's VGG net:
# 1-2 steps (16-32 MB), 4 slower; all T in one call 1.2-2.1x slower than the best (beyond the
# caches; docs/performance.md).
CPU_CALL_BYTES = 20 * 2**20
TIME_CHUNK_VALUES = "auto, an integer >= 1 or null"


def training_errors(bn_stats, time_chunk, training: bool = True) -> list[str]:
    """What is wrong with ``SVG.forward``'s ``bn_stats`` and ``time_chunk`` (``model.bn_stats``,
    ``model.time_chunk``), each named as the setting: the one statement of these rules, which the
    config checks, ``SVGModule`` and ``SVG.forward`` call. Chunks under joint statistics are
    wrong in training only: each chunk would be normalised on its own (another function)."""
    errors = []
    if bn_stats not in TRAINING_BN_STATS:
        errors.append(f"model.bn_stats={bn_stats!r} is unknown; allowed: {list(TRAINING_BN_STATS)}")
    is_int = isinstance(time_chunk, int) and not isinstance(time_chunk, bool)
    if not (time_chunk in (None, "auto") or is_int and time_chunk >= 1):
        errors.append(f"model.time_chunk={time_chunk!r} must be {TIME_CHUNK_VALUES}")
    elif training and is_int and bn_stats != "per_step":
        errors.append(
            f"time_chunk needs bn_stats='per_step' in training: model.time_chunk={time_chunk} "
            f"with model.bn_stats={bn_stats} would normalise each chunk on its own (another "
            "function); use model.bn_stats=per_step or model.time_chunk=auto"
        )
    return errors


def sampling_errors(bn_stats) -> list[str]:
    """What is wrong with ``SVG.iter_samples``' ``bn_stats`` (``eval.bn``): the one statement of
    this rule, which the config checks and ``iter_samples`` call."""
    if bn_stats in SAMPLING_BN_STATS:
        return []
    return [f"eval.bn={bn_stats!r} is unknown; allowed: {list(SAMPLING_BN_STATS)}"]


def skip_source(t: int, n_past: int, skip: str) -> int:
    """Index of the frame whose encoder features feed the decoder's skips when predicting frame t.

    ``last``: the previous frame while conditioning, then the last conditioning frame (paper text).
    ``reference``: the same but frozen at frame n_past-2 (the reference code's off-by-one).
    ``previous``: always frame t-1, generated frames included (``last_frame_skip``).
    """
    if skip == "previous":
        return t - 1
    frozen = n_past - 1 if skip == "last" else max(n_past - 2, 0)
    return min(t - 1, frozen)


def repeat_steps(x: torch.Tensor, steps: list[int]) -> torch.Tensor:
    """``x[:, steps]`` for x (B, U, ...), built from runs of equal steps as expanded slices: its
    backward sums each run, where indexing's would scatter-add (``index_put``), several times
    slower on CPUs. Consecutive steps are a view."""
    if steps == list(range(steps[0], steps[0] + len(steps))):
        return x[:, steps[0] : steps[0] + len(steps)]
    runs = [(step, len(list(group))) for step, group in groupby(steps)]
    return torch.cat([x[:, s : s + 1].expand(-1, n, *x.shape[2:]) for s, n in runs], dim=1)


def spans(n: int, size: int | None) -> list[range]:
    """0..n-1 as consecutive ranges of ``size`` (one range when None)."""
    size = size or n
    return [range(a, min(a + size, n)) for a in range(0, n, size)]


def cat(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat`` without the copy of a single part."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def init_weights(module: nn.Module) -> None:
    """Reference initialisation; LSTMs keep PyTorch's default uniform init."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@dataclass
class Latents:
    """The latent distributions over ground-truth frames x (B, T, ...), per step t = 1..T-1:
    the posterior q_phi(z_t | x_0:t) and, for SVG-LP, the learned prior p_psi(z_t | x_0:t-1)
    (None for the fixed prior and the deterministic model)."""

    mu: torch.Tensor | None  # (B, T-1, z)
    logvar: torch.Tensor | None
    prior_mu: torch.Tensor | None
    prior_logvar: torch.Tensor | None


@dataclass
class TeacherForced:
    """Outputs of a training pass over x: (B, T, ...)."""

    x_hat: torch.Tensor  # (B, T-1, C, H, W): predictions of frames 1..T-1
    latents: Latents

    def loss(self, x: torch.Tensor, beta: float) -> LossTerms:
        """The training objective (``svg_loss``) of this pass over x (B, T, ...)."""
        lat = self.latents
        return svg_loss(
            self.x_hat, x[:, 1:], beta, lat.mu, lat.logvar, lat.prior_mu, lat.prior_logvar
        )


@dataclass
class SampleChunk:
    """Rows ``rows`` (indices into the B*S sequence-sample pairs) of a sampling call."""

    rows: torch.Tensor
    frames: torch.Tensor  # (N, n_future, C, H, W)
    prior_mu: torch.Tensor | None
    prior_logvar: torch.Tensor | None


@dataclass
class Samples:
    """``frames``: (B, S, n_future, C, H, W), S = num_samples (1 for the deterministic model).
    ``prior_mu``/``prior_logvar``: (B, S, n_future, z) of the learned prior at each generated step
    (LP only, else None)."""

    frames: torch.Tensor
    prior_mu: torch.Tensor | None = None
    prior_logvar: torch.Tensor | None = None


class SVG(nn.Module):
    def __init__(self, config: SVGConfig):
        super().__init__()
        self.config = config.validate()
        self.variant, self.skip, self.z_dim = config.variant, config.skip, config.z_dim
        self.encoder, self.decoder = build_backbone(
            config.backbone, config.channels, config.g_dim, config.nf
        )
        z_in = 0 if config.variant == "deterministic" else config.z_dim
        self.frame_predictor = FramePredictor(
            config.g_dim + z_in, config.g_dim, config.rnn_size, config.predictor_layers
        )
        if config.variant != "deterministic":
            self.posterior = GaussianLSTM(
                config.g_dim, config.z_dim, config.rnn_size, config.posterior_layers
            )
        if config.variant == "lp":
            self.prior = GaussianLSTM(
                config.g_dim, config.z_dim, config.rnn_size, config.prior_layers
            )
        self.apply(init_weights)

    def fast_paths(self, compile: bool = False, channels_last: bool = False) -> SVG:
        """Switches for GPUs, each computing the same function: ``channels_last`` stores conv
        weights NHWC, which convolutions then run in (the layout tensor cores want);
        ``compile`` runs every network through torch.compile in place (``Module.compile``), which
        fuses BatchNorm, LeakyReLU and the elementwise work around the convolutions; parameter
        names, the state dict and checkpoints are unchanged."""
        if channels_last:
            self.to(memory_format=torch.channels_last)
        if compile:
            for net in self.children():
                net.compile()
        return self

    @property
    def stochastic(self) -> bool:
        return self.variant != "deterministic"

    @property
    def warmup_mean(self) -> bool:
        """Whether generation feeds the posterior mean (not a sample) to the frame predictor on
        the conditioning frames: the reference's SVG-FP generation does, its SVG-LP samples."""
        w = self.config.warmup
        return w == "mean" or (w == "reference" and self.variant == "fp")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """All frames of x (B, T, C, H, W) in one encoder call -> h (B, T, g), skips (B, T, ...)."""
        b, t = x.shape[:2]
        h, skips = self.encoder(x.flatten(0, 1))
        return h.view(b, t, -1), [s.view(b, t, *s.shape[1:]) for s in skips]

    def _latents(self, h: torch.Tensor) -> Latents:
        """Posterior over h_1..h_T-1 and learned prior over h_0..h_T-2, each LSTM run once over
        the whole sequence (every input is ground truth)."""
        if not self.stochastic:
            return Latents(None, None, None, None)
        mu, logvar, _ = self.posterior(h[:, 1:])
        prior_mu = prior_logvar = None
        if self.variant == "lp":
            prior_mu, prior_logvar, _ = self.prior(h[:, :-1])
        return Latents(mu, logvar, prior_mu, prior_logvar)

    def latents(self, x: torch.Tensor) -> Latents:
        """The latent distributions over ground-truth frames x (B, T, C, H, W), nothing decoded."""
        return self._latents(self.encode(x)[0])

    def encoder_calls(self, seq_len: int) -> list[int]:
        """The frames the reference's training step encodes, in call order: SVG-LP encodes
        x_{t-1} then x_t at every step t = 1..T-1; SVG-FP encodes every frame once, in order
        (and so does the deterministic model, which is SVG-FP without z)."""
        if self.variant == "lp":
            return [f for t in range(1, seq_len) for f in (t - 1, t)]
        return list(range(seq_len))

    def auto_time_chunk(self, x: torch.Tensor) -> int | None:
        """Time steps per encoder/decoder call for x (B, T, C, H, W) under ``time_chunk="auto"``:
        all T in one call off the CPU (a GPU wants large calls), on a CPU as many as keep the
        widest activation of a call within ``CPU_CALL_BYTES``."""
        if x.device.type != "cpu":
            return None
        b, t = x.shape[:2]
        step_bytes = b * self.encoder.widest_activation(*x.shape[-2:]) * x.element_size()
        steps = max(1, CPU_CALL_BYTES // step_bytes)
        return steps if steps < t else None

    def forward(
        self,
        x: torch.Tensor,
        n_past: int,
        bn_stats: str = "per_step",
        time_chunk: int | str | None = "auto",
    ) -> TeacherForced:
        """Teacher-forced pass: every input frame is ground truth, so each LSTM runs once over the
        whole sequence and the encoder/decoder each run once over all frames, or over
        ``time_chunk`` time steps per call. ``n_past``: the conditioning frames, which decide where
        the decoder's skips come from. ``bn_stats``: ``per_step`` normalises every time step with
        its own batch statistics and updates the running statistics as the reference's
        frame-by-frame calls would; ``joint`` uses the statistics of all B*T frames of the one
        call. Chunks compute the same function under ``per_step`` (statistics are per step
        anyway) and keep a call's activations small enough for a CPU's caches; ``"auto"`` picks
        their size (``auto_time_chunk``), or one call where chunks would change the function."""
        if errors := training_errors(bn_stats, time_chunk, self.training):
            raise ValueError("; ".join(errors))
        per_step = bn_stats == "per_step" and self.training  # eval: running statistics
        if time_chunk == "auto":  # chunks change the function only under joint training statistics
            time_chunk = None if self.training and not per_step else self.auto_time_chunk(x)
        b, t = x.shape[:2]
        # The decoder's skip terms are computed once per source frame (frames 0..u-1: a few
        # conditioning frames unless skip=previous), then repeated to the T-1 decoded steps.
        src = [skip_source(i, n_past, self.skip) for i in range(1, t)]
        u = max(src) + 1
        h, skips = [], []
        calls = self.encoder_calls(t)
        for span in spans(t, time_chunk):
            sub = [c - span.start for c in calls if c in span]  # in order: chunks follow calls
            with step_statistics(self.encoder, len(span), sub) if per_step else nullcontext():
                h_span, skips_span = self.encode(x[:, span.start : span.stop])
            h.append(h_span)
            if span.start < u:
                skips.append([s[:, : u - span.start] for s in skips_span])
        h = cat(h, 1)
        skips = [cat(parts, 1).flatten(0, 1) for parts in zip(*skips)]
        terms = [tm.view(b, u, *tm.shape[1:]) for tm in self.decoder.skip_terms(skips)]
        latents = self._latents(h)
        inp = h[:, :-1]
        if self.stochastic:
            inp = torch.cat([inp, reparameterize(latents.mu, latents.logvar)], dim=-1)
        g, _ = self.frame_predictor(inp)
        x_hat = []
        for span in spans(t - 1, time_chunk):
            steps = [repeat_steps(tm, src[span.start : span.stop]).flatten(0, 1) for tm in terms]
            n = len(span)
            with step_statistics(self.decoder, n, range(n)) if per_step else nullcontext():
                d = self.decoder(g[:, span.start : span.stop].flatten(0, 1), terms=steps)
            x_hat.append(d.view(b, n, *x.shape[2:]))
        return TeacherForced(cat(x_hat, 1), latents)

    def noise_steps(self, n_cond: int, n_future: int) -> int:
        """Standard-normal draws per sample: the P-1 conditioning transitions, then each
        generated frame."""
        return n_cond - 1 + n_future if self.stochastic else 0

    @torch.no_grad()
    def iter_samples(
        self,
        cond: torch.Tensor,
        n_future: int,
        num_samples: int = 1,
        chunk_size: int | None = None,
        noise: torch.Tensor | None = None,
        bn_stats: str = "running",
    ) -> Iterator[SampleChunk]:
        """Futures for every sequence of ``cond`` (B, n_cond, C, H, W), as chunks of at most
        ``chunk_size`` rows of the B*S (sequence, sample) pairs, row ``b * S + s``. ``noise``
        (B, S, noise_steps, z) fixes every standard-normal draw (reproducible evaluation).

        ``bn_stats``: ``running`` (in eval mode), or ``batch``: BatchNorm normalises with the
        statistics of the batch being generated, as the reference's generation code does (it
        leaves the encoder and decoder in train mode): every call sees the B sequences of
        ``cond`` for one sample index, so the chunks are one per sample (``chunk_size`` is
        ignored) and the results depend on which sequences make up ``cond``. Running statistics
        are left untouched."""
        if errors := sampling_errors(bn_stats):
            raise ValueError(errors[0])
        from_batch = bn_stats == "batch"
        s = num_samples if self.stochastic else 1
        b, n_cond = cond.shape[:2]
        stats = step_statistics if from_batch else lambda *_: nullcontext()
        # The layout stays NHWC while chunks are handed out (the caller scores them in between).
        with self._nhwc_on_cpu(cond):
            # Conditioning frames are encoded once, not once per sample (with batch statistics each
            # frame is normalised over the B sequences, as one reference call per frame would).
            with stats(self.encoder, n_cond):
                h, skips = self.encode(cond)
            # The first generated frame's skip terms, once per sequence (shared by its samples).
            src = skip_source(n_cond, n_cond, self.skip)
            terms = self.decoder.skip_terms([sk[:, src] for sk in skips])
            if noise is not None:
                noise = noise.to(cond.device).flatten(0, 1)
            rows = torch.arange(b * s, device=cond.device)
            if from_batch:
                chunks = [rows[i::s] for i in range(s)]  # one sample index of every sequence
            else:
                chunks = rows.split(chunk_size or b * s)
            for rows in chunks:
                eps = None if noise is None else noise[rows]
                with stats(self.encoder, 1), stats(self.decoder, 1):
                    frames, mu, logvar = self._rollout(
                        h[rows // s], [tm[rows // s] for tm in terms], n_future, eps
                    )
                yield SampleChunk(rows, frames, mu, logvar)

    @contextmanager
    def _nhwc_on_cpu(self, x: torch.Tensor):
        """Generation on a CPU in float32 with the convolution weights stored NHWC, and back to
        NCHW after: oneDNN then skips reordering every output to NCHW, and best-of-N sampling ran
        1.06-1.15x (paper SM-MNIST net) and 1.25-1.41x (BAIR's VGG net) faster across runs,
        while training runs faster NCHW (docs/performance.md, "CPU generation"). The same
        function, up to float rounding. Weights already NHWC (``fast_paths``) and compiled
        networks are left as they are."""
        nets = (self.encoder, self.decoder)
        switch = (
            x.dtype == torch.float32
            and cpu_kernel_choice(x, next(self.encoder.parameters()))
            and all(getattr(net, "_compiled_call_impl", None) is None for net in nets)
            and all(p.is_contiguous() for net in nets for p in net.parameters())
        )
        if not switch:
            yield
            return
        for net in nets:
            net.to(memory_format=torch.channels_last)
        try:
            yield
        finally:
            for net in nets:
                net.to(memory_format=torch.contiguous_format)

    def sample(
        self,
        cond: torch.Tensor,
        n_future: int,
        num_samples: int = 1,
        chunk_size: int | None = None,
        noise: torch.Tensor | None = None,
        wrap: Callable[[Iterator[SampleChunk], int], Iterable[SampleChunk]] | None = None,
    ) -> Samples:
        """``num_samples`` futures of ``n_future`` frames for every sequence of ``cond``
        (B, n_cond, C, H, W), all samples of all sequences batched together (see
        ``iter_samples``). Call in eval mode. ``wrap(chunks, count)`` may wrap the iterator of
        chunks (a progress bar)."""
        s = num_samples if self.stochastic else 1
        b = cond.shape[0]
        chunks = self.iter_samples(cond, n_future, num_samples, chunk_size, noise)
        if wrap is not None:  # e.g. a progress bar over the chunks (their count is given)
            chunks = wrap(chunks, -(-b * s // (chunk_size or b * s)))
        chunks = list(chunks)
        frames = torch.cat([c.frames for c in chunks]).view(b, s, n_future, *cond.shape[2:])
        if self.variant != "lp":
            return Samples(frames)
        mu = torch.cat([c.prior_mu for c in chunks]).view(b, s, n_future, -1)
        logvar = torch.cat([c.prior_logvar for c in chunks]).view(b, s, n_future, -1)
        return Samples(frames, mu, logvar)

    def _rollout(
        self,
        h: torch.Tensor,
        terms: list[torch.Tensor],
        n_future: int,
        eps: torch.Tensor | None = None,
    ):
        """h: (N, P, g) of the conditioning frames, ``terms``: the decoder's skip terms for the
        first generated frame (``Decoder.skip_terms``, N rows). Warms the LSTMs up on the P-1
        conditioning transitions (z from the posterior), then generates n_future frames.
        ``eps``: (N, P-1+n_future, z) standard-normal draws, or None to draw them here."""
        n_cond = h.shape[1]
        if eps is None and self.stochastic:
            eps = torch.randn(h.shape[0], n_cond - 1 + n_future, self.z_dim, device=h.device)
        prior_state = pred_state = None
        if n_cond > 1:
            h_prev, h_target = h[:, :-1], h[:, 1:]
            inp = h_prev
            if self.stochastic:
                mu, logvar, _ = self.posterior(h_target)
                z = mu if self.warmup_mean else reparameterize(mu, logvar, eps[:, : n_cond - 1])
                inp = torch.cat([h_prev, z], -1)
                if self.variant == "lp":
                    _, _, prior_state = self.prior(h_prev)
            _, pred_state = self.frame_predictor(inp, None)
        h_in = h[:, -1:]
        frames, mus, logvars = [], [], []
        for step in range(n_future):
            if self.stochastic:
                e = eps[:, n_cond - 1 + step, None]
                if self.variant == "lp":
                    mu, logvar, prior_state = self.prior(h_in, prior_state)
                    z = reparameterize(mu, logvar, e)
                    mus.append(mu[:, 0])
                    logvars.append(logvar[:, 0])
                else:
                    z = e.to(h_in.dtype)
                h_in = torch.cat([h_in, z], dim=-1)
            g, pred_state = self.frame_predictor(h_in, pred_state)
            x = self.decoder(g[:, 0], terms=terms)
            frames.append(x)
            if step + 1 < n_future:
                h_next, skip_next = self.encoder(x)
                h_in = h_next[:, None]
                if self.skip == "previous":
                    terms = self.decoder.skip_terms(skip_next)
        frames = torch.stack(frames, 1)
        if self.variant != "lp":
            return frames, None, None
        return frames, torch.stack(mus, 1), torch.stack(logvars, 1)
