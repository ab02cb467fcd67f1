"""What every video DataModule shares: the constructor, the clip lengths and the loaders.

Training reads an endless stream of indices: items are pure functions of (seed, index), and the
epoch that starts after ``k`` optimizer steps yields indices ``k * B * W`` onwards (B the batch
size, W the number of processes), so the stream never repeats, DataLoader workers and DDP ranks
get disjoint indices, and a run resumed from step ``k`` sees exactly the batches it would have seen
without the interruption. Validation and test read their fixed items in order.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, Sampler

from svg_lightning.errors import ConfigError


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


def worker_init(worker_id: int) -> None:
    """A DataLoader worker ignores Ctrl-C and SIGTERM: a terminal or a scheduler sends them to
    every process of the job, and a worker that died of one would crash the main process
    mid-step instead of letting it save and stop (callbacks.SaveOnSigterm); the main process
    ends its workers itself. Then Lightning's worker seeding, which a loader with its own
    ``worker_init_fn`` would otherwise lose (``seed_everything(workers=True)``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id)


def make_loader(datamodule: VideoDataModule, dataset: Dataset, train: bool) -> DataLoader:
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
        worker_init_fn=worker_init,
        # Its own generator: creating an iterator then draws nothing from the global RNG, whose
        # state a resumed run restores (the items themselves need no RNG).
        generator=torch.Generator().manual_seed(0),
    )


class VideoDataModule(pl.LightningDataModule):
    """A dataset of videos cut into clips of ``n_past + n_future`` frames (``test_seq_len`` for
    the test set). Subclasses set the class attributes below and build ``train_set``, ``val_set``
    and ``test_set`` in ``setup``; their own constructor arguments are saved in ``hparams`` with
    these ones.

    ``train_length`` items make an epoch of the training stream; the ``val_videos`` validation and
    ``test_videos`` test items are fixed by ``val_seed`` and ``test_seed``."""

    name = ""  # the config name and the prepare subcommand
    title = ""  # how messages name the dataset
    channels = 1
    image_sizes: tuple[int, ...] = (64,)
    max_seq_len: int | None = None  # frames per video, None when videos are as long as asked
    # The evaluation setting papers compare SVG under (spec'd by SRVP, Franceschi et al. 2020):
    # n_past, n_future, num_videos, and whether LPIPS and FVD are reported (KTH and BAIR only).
    protocol: dict = {}

    def __init__(
        self,
        data_dir: str = "data",
        *,
        image_size: int = 64,
        n_past: int = 10,
        n_future: int = 10,
        batch_size: int = 100,
        num_workers: int = 0,
        train_length: int = 60_000,
        train_seed: int = 0,
        val_videos: int = 64,
        val_seed: int = 1,
        test_videos: int | None = None,
        test_seed: int = 42,
        test_seq_len: int | None = None,
    ):
        super().__init__()
        if image_size not in self.image_sizes:
            raise ConfigError(
                f"data.image_size={image_size} is not available for {self.title}; "
                f"allowed: {list(self.image_sizes)}"
            )
        # Clip lengths belong to the model's hparams; logging them twice makes Lightning refuse
        # an evaluation whose lengths differ from training.
        self.save_hyperparameters(ignore=["n_past", "n_future", "test_videos", "test_seq_len"])
        self.seq_len = n_past + n_future
        self.test_seq_len = test_seq_len or self.seq_len
        self.test_videos = test_videos or self.protocol["num_videos"]

    def check_available(self, stage: str) -> None:
        """Raise the dataset's own error (not prepared, an empty split, a missing or mismatched
        file) now, so a command refuses before it writes anything; building the splits is cheap
        (generated on the fly, or memory-mapped after reading the arrays' headers only), and
        Lightning's own ``setup`` call builds them again."""
        self.setup(stage)

    def train_dataloader(self) -> DataLoader:
        return make_loader(self, self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return make_loader(self, self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return make_loader(self, self.test_set, train=False)
