"""The training data stream: items are pure functions of (seed, index), read in index order.

The epoch that starts after ``k`` optimizer steps yields indices ``k * B * W`` onwards (B the
batch size, W the number of processes), so the stream never repeats, DataLoader workers and DDP
ranks get disjoint indices, and a run resumed from step ``k`` sees exactly the batches it would
have seen without the interruption.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler


class TrainStream(Sampler[int]):
    def __init__(self, datamodule: pl.LightningDataModule, length: int, batch_size: int):
        self.datamodule, self.length, self.batch_size = datamodule, length, batch_size

    def start(self) -> int:
        trainer = self.datamodule.trainer
        if trainer is None:
            return 0
        return trainer.global_step * self.batch_size * trainer.world_size

    def __iter__(self) -> Iterator[int]:
        start = self.start()
        return iter(range(start, start + self.length))

    def __len__(self) -> int:
        return self.length


def make_loader(datamodule, dataset, train: bool) -> DataLoader:
    """Training: the stream of never-repeating indices; evaluation: the fixed items in order."""
    hp = datamodule.hparams
    sampler = TrainStream(datamodule, len(dataset), hp.batch_size) if train else None
    return DataLoader(
        dataset,
        batch_size=hp.batch_size,
        sampler=sampler,
        drop_last=train,
        num_workers=hp.num_workers,
        persistent_workers=hp.num_workers > 0,
        # Its own generator: creating an iterator then draws nothing from the global RNG, whose
        # state a resumed run restores (the items themselves need no RNG).
        generator=torch.Generator().manual_seed(0),
    )


class VideoDataModule(pl.LightningDataModule):
    """The loaders every dataset shares: the training stream, the fixed val/test sets in order.
    Subclasses build ``train_set``, ``val_set`` and ``test_set`` in ``setup``."""

    def train_dataloader(self) -> DataLoader:
        return make_loader(self, self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return make_loader(self, self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return make_loader(self, self.test_set, train=False)
