"""The DataModules the configs in ``conf/data`` name: generated Stochastic Moving MNIST, and KTH
and BAIR read from the arrays ``python -m svg_lightning.data.prepare`` writes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from svg_lightning.data.base import VideoDataModule
from svg_lightning.data.clips import Clips, fixed_clips
from svg_lightning.data.digits import load_digits
from svg_lightning.data.smmnist import IMAGE_SIZES, MovingMNIST
from svg_lightning.errors import ConfigError, DataNotPreparedError

log = logging.getLogger(__name__)


class SMMNISTDataModule(VideoDataModule):
    """Stochastic Moving MNIST, generated as it is read: training videos move training digits,
    validation and test videos move test digits (``digits.load_digits``; ``download`` lets
    torchvision fetch MNIST into ``data_dir``)."""

    name, title = "smmnist", "SM-MNIST"
    channels = 1
    image_sizes = IMAGE_SIZES
    max_seq_len = None  # the generator runs as long as asked
    protocol = {"n_past": 5, "n_future": 20, "num_videos": 5000, "lpips": False, "fvd": False}

    def __init__(
        self, data_dir: str = "data", *, num_digits: int = 2, download: bool = False, **kwargs
    ):
        super().__init__(data_dir, **kwargs)
        if num_digits < 1:
            raise ConfigError(f"data.num_digits={num_digits} must be >= 1")

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        common = dict(num_digits=hp.num_digits, image_size=hp.image_size)
        if stage in (None, "fit"):
            train_digits = load_digits(hp.data_dir, train=True, download=hp.download)
            self.train_set = MovingMNIST(
                train_digits, hp.train_length, self.seq_len, seed=hp.train_seed, **common
            )
        test_digits = load_digits(hp.data_dir, train=False, download=hp.download)
        self.val_set = MovingMNIST(
            test_digits, hp.val_videos, self.seq_len, seed=hp.val_seed, **common
        )
        self.test_set = MovingMNIST(
            test_digits, self.test_videos, self.test_seq_len, seed=hp.test_seed, **common
        )


class PreparedVideoDataModule(VideoDataModule):
    """A dataset prepared into ``data_dir/folder(image_size)``, whose ``index.json`` lists its
    videos; ``archives`` names the official files the prepare command converts."""

    archives = ""

    def __init__(self, data_dir: str = "data", **kwargs):
        super().__init__(data_dir, **kwargs)
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / self.folder(self.hparams.image_size)

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
                f"{self.archives} with: {self.prepare_command()}"
            )
        try:
            return json.loads(path.read_text())
        except (ValueError, OSError) as err:  # JSONDecodeError and UnicodeDecodeError included
            raise DataNotPreparedError(
                f"{path} cannot be read ({err}); prepare the {self.title} data again with: "
                f"{self.prepare_command()}"
            ) from None

    def check_split(self, videos: list, split: str) -> None:
        """Refuse a split without videos (training would run without validation, checkpoint
        selection or metrics) or one whose files are gone."""
        index = self.root / "index.json"
        if not videos:
            raise DataNotPreparedError(
                f"the {self.title} {split} split is empty: {index} lists no {split} video. "
                f"Prepare the data again (it reports which inputs were damaged) with: "
                f"{self.prepare_command()}"
            )
        for file in dict.fromkeys(file for file, _, _ in videos):
            if not (self.root / file).is_file():
                raise DataNotPreparedError(
                    f"{self.root / file}, listed in {index} for the {split} split, does not "
                    f"exist; prepare the data again with: {self.prepare_command()}"
                )


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
    protocol = {"n_past": 10, "n_future": 30, "num_videos": 1000, "lpips": True, "fvd": True}

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
        for name, videos in split.items():
            self.check_split(videos, name)
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
    protocol = {"n_past": 2, "n_future": 28, "num_videos": 256, "lpips": True, "fvd": True}

    def __init__(self, data_dir: str = "data", *, random_start: bool = False, **kwargs):
        super().__init__(data_dir, **kwargs)
        self.random_start = random_start

    def setup(self, stage: str | None = None) -> None:
        index = self.load_index()
        videos = {
            split: [
                (s["file"], row, self.max_seq_len) for s in shards for row in range(s["videos"])
            ]
            for split, shards in index["splits"].items()
        }
        for split in ("train", "test"):
            self.check_split(videos.get(split, []), split)
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
