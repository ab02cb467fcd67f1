"""Facts of the reference implementation that several tests check against."""

from __future__ import annotations

from torch import nn

# Trainable parameter counts of the reference code (counted on its released networks):
# config -> (encoder, decoder, frame_predictor, posterior, prior, total)
SPEC_COUNTS = {
    "smmnist_lp": (
        dict(variant="lp", backbone="dcgan64", channels=1, z_dim=10),
        (3_805_376, 6_558_529, 1_121_152, 564_500, 564_500, 12_614_057),
    ),
    "bair_lp": (
        dict(variant="lp", backbone="vgg64", channels=3, z_dim=64),
        (8_689_600, 11_822_659, 1_134_976, 592_256, 592_256, 22_831_747),
    ),
    "kth_fp": (
        dict(variant="fp", backbone="vgg64", channels=1, z_dim=24),
        (8_688_448, 11_821_505, 1_124_736, 571_696, None, 22_206_385),
    ),
    "kth_lp": (
        dict(variant="lp", backbone="vgg64", channels=1, z_dim=24),
        (8_688_448, 11_821_505, 1_124_736, 571_696, 571_696, 22_778_081),
    ),
    "kth128_lp": (
        dict(variant="lp", backbone="vgg128", channels=1, z_dim=24),
        (15_770_944, 21_263_297, 1_124_736, 571_696, 571_696, 39_302_369),
    ),
    "dcgan128_lp": (
        dict(variant="lp", backbone="dcgan128", channels=1, z_dim=10),
        (8_001_216, 14_948_673, 1_121_152, 564_500, 564_500, 25_200_041),
    ),
}


def count(module: nn.Module | None) -> int | None:
    if module is None:
        return None
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
