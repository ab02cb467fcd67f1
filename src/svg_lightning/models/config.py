"""The SVG architecture, declared once: every network shape and rule the weights depend on.

``SVG`` is built from it, the LightningModule stores its fields as plain hyper-parameters (so
checkpoints load with ``torch.load(weights_only=True)``), config validation reports its errors,
and a resumed run must match it field by field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from svg_lightning.models.backbones import BACKBONE_SIZES

# Learned prior (SVG-LP, Sec. 3.1), fixed prior N(0, I) (SVG-FP) or no latent at all.
VARIANTS = ("lp", "fp", "deterministic")
SKIP_SOURCES = ("last", "reference", "previous")
# z fed to the frame predictor on the conditioning frames during generation: "reference" is what
# the reference code does (SVG-LP: a posterior sample; SVG-FP: the posterior mean).
WARMUPS = ("reference", "sample", "mean")
_POSITIVE = ("channels", "g_dim", "z_dim", "rnn_size", "predictor_layers", "posterior_layers",
             "prior_layers", "nf")  # fmt: skip


@dataclass(frozen=True)
class SVGConfig:
    """Defaults are the paper's SM-MNIST network (Sec. 4): DCGAN 64x64 encoder/decoder,
    |g| = 128, |z| = 10, 256-unit LSTMs (2 layers for the frame predictor, 1 for the others)."""

    variant: str = "lp"
    backbone: str = "dcgan64"  # dcgan32 | dcgan64 | dcgan128 | vgg64 | vgg128
    # Fixed by the backbone (None: the backbone's); stated so a mismatch with the data is caught.
    image_size: int | None = None
    channels: int = 1
    g_dim: int = 128
    z_dim: int = 10
    rnn_size: int = 256
    predictor_layers: int = 2
    posterior_layers: int = 1
    prior_layers: int = 1
    nf: int = 64  # DCGAN base width (VGG widths are fixed)
    # Which frame's encoder features feed the decoder's skips; see ``svg.skip_source``.
    skip: str = "last"
    warmup: str = "reference"  # see WARMUPS

    def __post_init__(self) -> None:
        if self.image_size is None and self.backbone in BACKBONE_SIZES:
            object.__setattr__(self, "image_size", BACKBONE_SIZES[self.backbone])

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def as_dict(self) -> dict:
        return asdict(self)

    def errors(self) -> list[str]:
        """Every bad field, each named as the ``model.`` setting with the allowed values."""
        out = []
        if self.variant not in VARIANTS:
            out.append(f"model.variant={self.variant!r} is unknown; allowed: {list(VARIANTS)}")
        if self.skip not in SKIP_SOURCES:
            out.append(f"model.skip={self.skip!r} is unknown; allowed: {list(SKIP_SOURCES)}")
        if self.warmup not in WARMUPS:
            out.append(f"model.warmup={self.warmup!r} is unknown; allowed: {list(WARMUPS)}")
        for name in _POSITIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                out.append(f"model.{name}={value!r} must be an integer >= 1")
        if self.backbone not in BACKBONE_SIZES:
            out.append(
                f"model.backbone={self.backbone!r} is unknown; allowed: {sorted(BACKBONE_SIZES)}"
            )
        elif BACKBONE_SIZES[self.backbone] != self.image_size:
            side = BACKBONE_SIZES[self.backbone]
            fits = [b for b, s in BACKBONE_SIZES.items() if s == self.image_size]
            out.append(
                f"model.backbone={self.backbone} works on {side}x{side} frames but the image "
                f"size is {self.image_size}; backbones for that size: {fits}"
            )
        return out

    def validate(self) -> SVGConfig:
        if errors := self.errors():
            raise ValueError("; ".join(errors))
        return self
