"""The DataModules the configs in ``conf/data`` name: generated Stochastic Moving MNIST, and KTH,
BAIR and your own videos read from the arrays ``python -m svg_lightning.data.prepare`` writes."""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath

from omegaconf import DictConfig, OmegaConf

from svg_lightning.data.base import VideoDataModule
from svg_lightning.data.clips import Clips, fixed_clips
from svg_lightning.data.digits import load_digits
from svg_lightning.data.smmnist import IMAGE_SIZES, MovingMNIST
from svg_lightning.data.sources.storage import InvalidOutput, npy_rows
from svg_lightning.data.sources.videos import prepared_channels
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

    # At most this many problems are spelled out; the rest are counted (a tampered folder can have
    # one per video, and the first few say what to repair).
    MAX_LISTED = 20

    def refuse(self, problems: list[str]) -> None:
        """Raise one DataNotPreparedError for every problem found, one line each, with the fix."""
        if not problems:
            return
        index = self.root / "index.json"
        fix = f"prepare the {self.title} data again with: {self.prepare_command()}"
        if len(problems) == 1:
            raise DataNotPreparedError(f"{index}: {problems[0]}; {fix}")
        lines = [f"  {p}" for p in problems[: self.MAX_LISTED]]
        if len(problems) > self.MAX_LISTED:
            lines.append(f"  ... and {len(problems) - self.MAX_LISTED} more")
        raise DataNotPreparedError(
            f"{index} does not describe usable {self.title} data ({len(problems)} problems):\n"
            + "\n".join(lines)
            + f"\n{fix}"
        )

    def frame_shape(self) -> tuple[int, ...]:
        """One frame's shape in the prepared arrays: (size, size), with a channel axis if RGB."""
        size = self.hparams.image_size
        return (size, size) if self.channels == 1 else (size, size, self.channels)

    def array_rows(
        self, file, where: str, tail: tuple[int, ...], seen: dict, problems: list
    ) -> int | None:
        """The first dimension of the array that index.json lists as ``file`` (at ``where``), from
        its header alone (``npy_rows``: uint8, (rows, *tail), as long as the header says), or None
        after adding why it cannot be used to ``problems``: not a relative path inside the data
        folder, listed before (in ``seen``), missing, or not such an array."""
        if not isinstance(file, str) or not file.endswith(".npy"):
            problems.append(f"{where}: 'file' is {file!r}, not the path of a .npy file")
            return None
        relative = PurePosixPath(file)
        if relative.is_absolute() or ".." in relative.parts:
            problems.append(f"{where}: 'file' {file!r} lies outside {self.root}")
            return None
        if relative in seen:  # a path, so that "videos/./a.npy" is "videos/a.npy" too
            problems.append(f"{where}: {file} is listed again (first as {seen[relative]})")
            return None
        seen[relative] = where
        path = self.root / relative
        if not path.is_file():
            problems.append(f"{where}: {path} does not exist")
            return None
        try:
            return npy_rows(path, tail)
        except InvalidOutput as err:
            problems.append(f"{where}: {path} {err}")
            return None

    def check_splits(self, videos: dict[str, list], damaged: set, problems: list) -> None:
        """A split without videos: training would run without validation, checkpoint selection
        or metrics. Not reported for a split in ``damaged``, whose entries' problems say why."""
        for split, listed in videos.items():
            if not listed and split not in damaged:
                problems.append(f"the {self.title} {split} split is empty: index.json lists no "
                                f"{split} video (the prepare command reports which inputs were "
                                "damaged)")  # fmt: skip


def _count(value, least: int) -> bool:
    """Whether an index.json count is a whole number >= ``least`` (JSON true is no count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


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


class PerVideoDataModule(PreparedVideoDataModule):
    """One ``.npy`` per video, listed in index.json's ``videos`` with its split (KTH, your own
    videos). Training clips: a video uniformly, then a start frame; validation and test: fixed
    seeded clips from ``validation_videos`` and the test videos."""

    splits: tuple[str, ...] = ("train", "test")  # train and test must hold videos

    def validation_videos(self, split: dict[str, list], test: list) -> list:
        """The videos validation clips come from: the test videos (KTH's reference has no
        validation split)."""
        return test

    def setup(self, stage: str | None = None) -> None:
        split = self.read_videos(self.load_index())
        hp = self.hparams
        train = _long_enough(split["train"], self.seq_len, self.title, "train")
        self.train_set = Clips(self.root, train, self.seq_len, hp.train_length, seed=hp.train_seed)
        test = _long_enough(split["test"], max(self.seq_len, self.test_seq_len), self.title, "test")
        val = self.validation_videos(split, test)
        val_clips = fixed_clips(val, self.seq_len, hp.val_videos, hp.val_seed)
        self.val_set = Clips(self.root, val, self.seq_len, len(val_clips), val_clips)
        test_clips = fixed_clips(test, self.test_seq_len, self.test_videos, hp.test_seed)
        self.test_set = Clips(self.root, test, self.test_seq_len, len(test_clips), test_clips)

    def read_videos(self, index) -> dict[str, list]:
        """{split: [(file, None, frames), ...]} from index.json, after checking every entry and
        every array's header against it; DataNotPreparedError listing each problem."""
        videos = index.get("videos") if isinstance(index, dict) else None
        if not isinstance(videos, list):
            self.refuse(["expected an object whose 'videos' is a list of videos"])
        split, problems, seen, damaged = {s: [] for s in self.splits}, [], {}, set()
        for i, v in enumerate(videos):
            where, before = f"video {i}", len(problems)
            if not isinstance(v, dict):
                problems.append(f"{where} is {v!r}, not an object")
                continue
            where += f" ({v.get('name', 'no name')})"
            if v.get("split") not in tuple(split):  # a tuple: the value may be unhashable
                names = [repr(s) for s in self.splits]
                choice = f"neither {', '.join(names[:-1])} nor {names[-1]}"
                problems.append(f"{where}: split {v.get('split')!r} is {choice}")
                continue
            rows = None
            if not _count(v.get("frames"), 1):
                problems.append(f"{where}: frames {v.get('frames')!r} is not a count of frames")
            else:
                rows = self.array_rows(v.get("file"), where, self.frame_shape(), seen, problems)
            if rows is not None and rows != v["frames"]:
                problems.append(f"{where}: lists {v['frames']} frames, but {self.root / v['file']} "
                                f"holds {rows}")  # fmt: skip
            elif rows is not None:
                split[v["split"]].append((v["file"], None, rows))
            if len(problems) > before:
                damaged.add(v["split"])
        self.check_splits({s: split[s] for s in ("train", "test")}, damaged, problems)
        self.refuse(problems)
        return split


class KTHDataModule(PerVideoDataModule):
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


class VideosDataModule(PerVideoDataModule):
    """Your own videos, prepared by ``prepare videos`` into ``data_dir`` itself. Splits as
    index.json gives them; validation clips come from the val videos, or from the test videos
    when there is none. The channels are those the data was prepared with (index.json), so they
    are an attribute of the instance after ``setup``; ``prepared_channels`` reads them for the
    config (``model.channels`` follows it)."""

    name, title = "videos", "your videos"
    archives = "your video files"
    channels = None  # index.json's; see prepared_channels
    image_sizes = (32, 64, 128)
    splits = ("train", "val", "test")
    # BAIR's clip lengths (the experiments' defaults); LPIPS and FVD as for the real datasets.
    protocol = {"n_past": 2, "n_future": 10, "num_videos": 256, "lpips": True, "fvd": True}

    @classmethod
    def folder(cls, image_size: int) -> str:
        return ""  # data_dir is the prepared folder (the --out of prepare videos)

    @classmethod
    def prepared_channels(cls, data_cfg) -> int | None:
        """The channels of the data ``data_cfg`` (a data config) points at; None if unprepared
        or not named yet (``data_dir: ???``)."""
        if isinstance(data_cfg, DictConfig):
            return prepared_channels(OmegaConf.select(data_cfg, "data_dir", default=None))
        return prepared_channels(data_cfg.get("data_dir"))

    def prepare_command(self) -> str:
        return (
            f"python -m svg_lightning.data.prepare videos --src YOUR_VIDEOS --out {self.data_dir} "
            f"--size {self.hparams.image_size}"
        )

    def read_videos(self, index) -> dict[str, list]:
        size, channels = (index.get(k) if isinstance(index, dict) else None
                          for k in ("size", "channels"))  # fmt: skip
        if channels not in (1, 3):
            self.refuse([f"channels {channels!r} is neither 1 nor 3"])
        if size != self.hparams.image_size:
            raise DataNotPreparedError(
                f"{self.root} holds {size}x{size} frames, but data.image_size="
                f"{self.hparams.image_size}; set data.image_size={size} (and a backbone of that "
                f"size), or prepare again with --size {self.hparams.image_size}"
            )
        self.channels = channels
        return super().read_videos(index)

    def validation_videos(self, split: dict[str, list], test: list) -> list:
        val = [v for v in split["val"] if v[2] >= self.seq_len]
        if not val:
            log.warning("%s: no val video of %d frames; validating on test clips",
                        self.title, self.seq_len)  # fmt: skip
            return test
        return val


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
        videos = self.read_videos(self.load_index())
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

    def read_videos(self, index) -> dict[str, list]:
        """{split: [(file, row, 30), ...]} from index.json, after checking every shard entry and
        every array's header against it; DataNotPreparedError listing each problem."""
        splits = index.get("splits") if isinstance(index, dict) else None
        if not isinstance(splits, dict):
            self.refuse(["expected an object whose 'splits' maps 'train' and 'test' to shards"])
        videos, problems, seen, damaged = {"train": [], "test": []}, [], {}, set()
        tail = (self.max_seq_len, *self.frame_shape())
        for split, shards in splits.items():
            if split not in videos:
                problems.append(f"split {split!r} is neither 'train' nor 'test'")
                continue
            if not isinstance(shards, list):
                problems.append(f"{split}: {shards!r} is not a list of shards")
                continue
            for i, shard in enumerate(shards):
                where = f"{split} shard {i}"
                if not isinstance(shard, dict):
                    problems.append(f"{where} is {shard!r}, not an object")
                    damaged.add(split)
                    continue
                if not _count(shard.get("videos"), 0):
                    problems.append(f"{where}: videos {shard.get('videos')!r} is not a count")
                    damaged.add(split)
                    continue
                before = len(problems)
                rows = self.array_rows(shard.get("file"), where, tail, seen, problems)
                if rows is not None and rows != shard["videos"]:
                    problems.append(f"{where}: lists {shard['videos']} videos, but "
                                    f"{self.root / shard['file']} holds {rows}")  # fmt: skip
                elif rows is not None:
                    videos[split] += [(shard["file"], r, self.max_seq_len) for r in range(rows)]
                if len(problems) > before:
                    damaged.add(split)
        self.check_splits(videos, damaged, problems)
        self.refuse(problems)
        return videos
