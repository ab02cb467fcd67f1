"""KTH and BAIR DataModules over the memory-mapped arrays written by ``svg_lightning.data.prepare``.

Frames are read lazily from ``.npy`` memory maps (never the whole dataset in RAM); each process
opens its own maps. Training clip ``i`` is drawn from ``(train_seed, i)`` and training reads an
endless stream of indices (``TrainStream``): reproducible, resumable, and workers and DDP ranks
never repeat each other. Validation and test clips are fixed by a seed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from svg_lightning.data.stream import VideoDataModule

log = logging.getLogger(__name__)


class DataNotPreparedError(FileNotFoundError):
    pass


class Memmaps:
    """Opens each ``.npy`` file once per process; dropped when pickled so that DataLoader
    workers open their own maps instead of receiving copies of the data."""

    def __init__(self, root: Path):
        self.root, self.maps = root, {}

    def __getitem__(self, file: str) -> np.ndarray:
        if file not in self.maps:
            self.maps[file] = np.load(self.root / file, mmap_mode="r")
        return self.maps[file]

    def __getstate__(self):
        return {"root": self.root, "maps": {}}


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W) or (T, H, W, C) -> float (T, C, H, W) in [0, 1]."""
    x = torch.from_numpy(np.array(frames)).float().div_(255.0)  # copies out of the read-only map
    return x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)


class Clips(Dataset):
    """Clips of ``seq_len`` frames from memory-mapped videos.

    ``videos``: (file, row, frames) per video, ``row`` None for a (T, ...) file or the row of an
    (N, T, ...) file. ``clips``: fixed (video, start) pairs, or None for clips drawn from
    ``(seed, index)``: uniform over videos, then over start frames (``random_start=False``
    starts at frame 0).
    """

    def __init__(self, root, videos, seq_len, length, clips=None, random_start=True, seed=0):
        self.maps, self.videos, self.seq_len = Memmaps(Path(root)), videos, seq_len
        self.length, self.clips, self.random_start = length, clips, random_start
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def _draw(self, index: int) -> tuple[int, int]:
        rng = np.random.default_rng([self.seed, index])
        video = int(rng.integers(len(self.videos)))
        last = self.videos[video][2] - self.seq_len
        return video, int(rng.integers(last + 1)) if self.random_start else 0

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        video, start = self.clips[index] if self.clips is not None else self._draw(index)
        file, row, _ = self.videos[video]
        array = self.maps[file]
        clip = (array if row is None else array[row])[start : start + self.seq_len]
        return {"frames": to_tensor(clip), "index": torch.tensor(index), "video": video}


def fixed_clips(videos, seq_len: int, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` seeded (video, start) pairs: a video uniformly, then a start frame uniformly."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        video = int(rng.integers(len(videos)))
        out.append((video, int(rng.integers(videos[video][2] - seq_len + 1))))
    return out


class PreparedVideoDataModule(VideoDataModule):
    name = ""
    title = ""
    archives = ""
    channels = 1
    image_sizes: tuple[int, ...] = (64,)
    max_seq_len: int | None = None
    protocol: dict = {}

    def __init__(
        self,
        data_dir: str = "data",
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
            raise ValueError(
                f"data.image_size={image_size} is not available for {self.title}; "
                f"allowed: {list(self.image_sizes)}"
            )
        # Clip lengths belong to the model's hparams; logging them twice makes Lightning refuse
        # an evaluation whose lengths differ from training.
        self.save_hyperparameters(ignore=["n_past", "n_future", "test_videos", "test_seq_len"])
        self.seq_len = n_past + n_future
        self.test_seq_len = test_seq_len or self.seq_len
        self.test_videos = test_videos or self.protocol["num_videos"]
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / self.folder(image_size)

    @classmethod
    def folder(cls, image_size: int) -> str:
        return cls.name

    def prepare_command(self) -> str:
        return f"python -m svg_lightning.data.prepare {self.name} --src DIR --out {self.data_dir}"

    def load_index(self) -> dict:
        path = self.root / "index.json"
        if not path.is_file():
            raise DataNotPreparedError(
                f"{self.title} data is not prepared: {path} does not exist. Prepare it from "
                f"{self.archives} with:\n  {self.prepare_command()}"
            )
        return json.loads(path.read_text())


def _long_enough(videos: list, seq_len: int, title: str, split: str) -> list:
    keep = [v for v in videos if v[2] >= seq_len]
    if not keep:
        raise DataNotPreparedError(
            f"no {title} {split} video has {seq_len} frames (n_past + n_future); use shorter clips"
        )
    if len(keep) < len(videos):
        log.warning("%s %s: %d videos shorter than %d frames are not used",
                    title, split, len(videos) - len(keep), seq_len)  # fmt: skip
    return keep


class KTHDataModule(PreparedVideoDataModule):
    """KTH actions: persons 1-20 train, 21-25 test. Training clips: a video uniformly, then a start
    frame; validation/test: fixed seeded clips from the test persons (1,000 clips of 40 frames
    under the evaluation protocol)."""

    name, title = "kth", "KTH"
    archives = "the six official KTH action zips (boxing.zip ... walking.zip, persons 01-25)"
    channels = 1
    image_sizes = (64, 128)
    protocol = {"n_past": 10, "n_future": 30, "num_videos": 1000}

    @classmethod
    def folder(cls, image_size: int) -> str:
        return f"kth{image_size}"

    def prepare_command(self) -> str:
        return super().prepare_command() + f" --size {self.hparams.image_size}"

    def setup(self, stage: str | None = None) -> None:
        index = self.load_index()
        split = {"train": [], "test": []}
        for v in index["videos"]:
            split[v["split"]].append((v["file"], None, v["frames"]))
        hp = self.hparams
        train = _long_enough(split["train"], self.seq_len, self.title, "train")
        self.train_set = Clips(self.root, train, self.seq_len, hp.train_length, seed=hp.train_seed)
        test = _long_enough(split["test"], max(self.seq_len, self.test_seq_len), self.title, "test")
        val_clips = fixed_clips(test, self.seq_len, hp.val_videos, hp.val_seed)
        self.val_set = Clips(self.root, test, self.seq_len, len(val_clips), val_clips)
        test_clips = fixed_clips(test, self.test_seq_len, self.test_videos, hp.test_seed)
        self.test_set = Clips(self.root, test, self.test_seq_len, len(test_clips), test_clips)


class BAIRDataModule(PreparedVideoDataModule):
    """BAIR robot pushing: 30-frame videos. Training: a random video from frame 0 (or a random
    start with ``random_start``); validation/test: the test videos from frame 0, in order."""

    name, title = "bair", "BAIR"
    archives = "bair_robot_pushing_dataset_v0.tar (softmotion30_44k TFRecords)"
    channels = 3
    image_sizes = (64,)
    max_seq_len = 30
    protocol = {"n_past": 2, "n_future": 28, "num_videos": 256}

    def __init__(self, *args, random_start: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.random_start = random_start

    def setup(self, stage: str | None = None) -> None:
        index = self.load_index()
        videos = {
            split: [(s["file"], row, 30) for s in shards for row in range(s["videos"])]
            for split, shards in index["splits"].items()
        }
        hp = self.hparams
        self.train_set = Clips(
            self.root, videos["train"], self.seq_len, hp.train_length,
            random_start=self.random_start, seed=hp.train_seed,
        )  # fmt: skip
        test = videos["test"]
        val = [(i, 0) for i in range(min(hp.val_videos, len(test)))]
        self.val_set = Clips(self.root, test, self.seq_len, len(val), val)
        clips = [(i, 0) for i in range(min(self.test_videos, len(test)))]
        self.test_set = Clips(self.root, test, self.test_seq_len, len(clips), clips)
