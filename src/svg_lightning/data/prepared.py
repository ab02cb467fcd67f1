"""KTH and BAIR DataModules over prepared (memory-mapped) data.

The preparation command that converts the official archives is not in this release yet, so these
modules describe their datasets (channels, sizes, lengths) for config validation and model
building, and stop at ``setup`` with a message naming the missing data and how it is prepared.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl


class DataNotPreparedError(FileNotFoundError):
    pass


class PreparedVideoDataModule(pl.LightningDataModule):
    name = ""
    title = ""
    archives = ""
    protocol: dict = {}
    channels = 1
    image_sizes: tuple[int, ...] = (64,)
    max_seq_len: int | None = None

    def __init__(
        self,
        data_dir: str = "data",
        image_size: int = 64,
        n_past: int = 10,
        n_future: int = 10,
        batch_size: int = 100,
        num_workers: int = 0,
        test_videos: int | None = None,
        test_seq_len: int | None = None,
    ):
        super().__init__()
        if image_size not in self.image_sizes:
            raise ValueError(
                f"data.image_size={image_size} is not available for {self.title}; "
                f"allowed: {list(self.image_sizes)}"
            )
        self.save_hyperparameters(ignore=["n_past", "n_future", "test_videos", "test_seq_len"])
        self.root = Path(data_dir) / f"{self.name}{image_size}"

    def setup(self, stage: str | None = None) -> None:
        raise DataNotPreparedError(
            f"{self.title} data is not prepared: expected {self.root}/index.json and its frames. "
            f"They are built from {self.archives} by `python -m svg_lightning.data.prepare "
            f"{self.name} --src DIR --out {self.root.parent}`, which is not in this release "
            "yet (it is the next data milestone). Until then use an SM-MNIST experiment "
            "(+experiment=smmnist_lp) or the default quickstart."
        )


class KTHDataModule(PreparedVideoDataModule):
    name, title = "kth", "KTH"
    protocol = {"n_past": 10, "n_future": 30, "num_videos": 1000}
    archives = "the six official KTH action zips (boxing.zip ... walking.zip, persons 01-25)"
    channels = 1
    image_sizes = (64, 128)


class BAIRDataModule(PreparedVideoDataModule):
    name, title = "bair", "BAIR"
    protocol = {"n_past": 2, "n_future": 28, "num_videos": 256}
    archives = "bair_robot_pushing_dataset_v0.tar (softmotion30_44k TFRecords)"
    channels = 3
    image_sizes = (64,)
    max_seq_len = 30
