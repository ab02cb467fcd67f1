"""`prepare videos` on a folder of your own videos (bad files of every kind included), the
DataModule over it, and the documented commands end to end."""

import json
import os

import numpy as np
import pytest
from hydra.utils import instantiate

from svg_lightning.config import validate_config
from svg_lightning.data.datamodules import VideosDataModule
from svg_lightning.data.sources.videos import hash_split, output_name, prepare_videos
from svg_lightning.errors import ConfigError, DataNotPreparedError, DataSourceError
from tests.helpers import TINY, compose_cfg, run_cli
from tests.helpers.fixtures import bouncing_square, write_mp4

# Names chosen so that a hash split with test=0.3,val=0.2 gives each split a video.
GOOD = ["a.mp4", "b c.mp4", "sub/d.mp4", "é ü.mp4", "f.mp4", "g.mp4", "h.mp4", "i.mp4"]
SPLIT = "test=0.3,val=0.2"
BAD = {  # file -> what its skip reason says
    "empty.mp4": "empty file (0 bytes)",
    "notes.txt": "InvalidDataError",
    "sub/cut.mp4": "InvalidDataError",
    "short.mp4": "5 frames (all), fewer than --min-frames 12",
    "bad.npy": "not a readable .npy array",
    "wide.npy": "has shape",
}


@pytest.fixture
def src(tmp_path):
    src = tmp_path / "my videos"
    (src / "sub").mkdir(parents=True)
    for k, name in enumerate(GOOD):  # mixed sizes, grey and colour
        frames = bouncing_square(16, (32, 48, 40)[k % 3], seed=k)
        write_mp4(src / name, frames[..., 0] if k % 2 else frames)
    np.save(src / "array.npy", bouncing_square(14, 24, seed=99).transpose(0, 3, 1, 2))
    (src / "empty.mp4").write_bytes(b"")
    (src / "notes.txt").write_text("not a video")
    whole = (src / "a.mp4").read_bytes()
    (src / "sub" / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    write_mp4(src / "short.mp4", bouncing_square(5, 32, seed=5))
    (src / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(src / "wide.npy", np.zeros((14, 5, 6, 7), np.uint8))
    return src


def test_every_bad_file_is_a_reported_skip_and_the_rest_are_prepared(src, tmp_path):
    out = tmp_path / "data" / "mine"
    summary = prepare_videos(src, out, size=32, split=SPLIT)
    skipped = dict(summary.skipped)
    assert set(skipped) == set(BAD)
    for name, why in BAD.items():
        assert why in skipped[name], (name, skipped[name])
    index = json.loads((out / "index.json").read_text())
    names = [v["name"] for v in index["videos"]]
    assert sorted(names) == sorted([*GOOD, "array.npy"])
    assert (index["size"], index["channels"], index["resize"]) == (32, 3, "bicubic")
    for v in index["videos"]:
        array = np.load(out / v["file"], mmap_mode="r")
        assert array.dtype == np.uint8 and array.shape == (v["frames"], 32, 32, 3)
        assert v["split"] == hash_split(v["name"], {"test": 0.3, "val": 0.2})
        assert v["file"].isascii() and " " not in v["file"]
    assert {v["split"] for v in index["videos"]} == {"train", "val", "test"}
    sizes = {v["name"]: (v["original"]["width"], v["original"]["fps"]) for v in index["videos"]}
    assert sizes["b c.mp4"] == (48, 10.0) and sizes["array.npy"] == (24, None)
    # The square moves: the prepared frames are not all alike.
    a = np.load(out / output_name("a.mp4"))
    assert np.abs(a[0].astype(int) - a[-1]).mean() > 1


def test_split_is_by_path_not_by_listing(src, tmp_path):
    first = prepare_videos(src, tmp_path / "one", size=32, split=SPLIT)
    (src / "zz new.mp4").write_bytes((src / "a.mp4").read_bytes())
    prepare_videos(src, tmp_path / "two", size=32, split=SPLIT)
    splits = [
        {
            v["name"]: v["split"]
            for v in json.loads((tmp_path / d / "index.json").read_text())["videos"]
        }
        for d in ("one", "two")
    ]
    assert first.videos + 1 == len(splits[1])
    assert all(splits[1][name] == split for name, split in splits[0].items())


def test_split_file(src, tmp_path):
    listing = tmp_path / "splits.txt"
    listing.write_text("# mine\nb c.mp4 test\na.mp4 train\nsub/d.mp4 val\nmissing.mp4 train\nx\n")
    summary = prepare_videos(src, tmp_path / "out", size=32, split_file=listing)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert {v["name"]: v["split"] for v in index["videos"]} == {
        "b c.mp4": "test", "a.mp4": "train", "sub/d.mp4": "val"
    }  # fmt: skip
    skipped = dict(summary.skipped)
    assert skipped["f.mp4"] == f"not listed in {listing}"
    assert any("line 6" in item for item in skipped)
    assert [name for name, _ in summary.not_found] == ["missing.mp4"]


def test_rerun_reuses_finished_and_redoes_damaged_videos(src, tmp_path):
    out = tmp_path / "out"
    prepare_videos(src, out, size=32, split=SPLIT)
    damaged = out / output_name("a.mp4")
    damaged.write_bytes(damaged.read_bytes()[:-100])
    again = prepare_videos(src, out, size=32, split=SPLIT)
    assert again.reused == len(GOOD)  # all but a.mp4, plus array.npy
    assert [item for item, _ in again.replaced] == [str(damaged)]
    assert np.load(damaged).shape == (16, 32, 32, 3)
    grey = prepare_videos(src, out, size=32, channels=1, split=SPLIT)  # other settings: redone
    assert grey.reused == 0 and "channels=3" in grey.replaced[0][1]
    assert np.load(damaged).shape == (16, 32, 32)


@pytest.mark.parametrize("older", [False, True], ids=["edited", "copied with an older time"])
def test_a_source_replaced_under_its_name_is_converted_again(src, tmp_path, older):
    """A rerun converts a video again once its source was replaced, whether the new file is newer
    (an edit) or older (``cp -p`` or ``rsync -a`` of another take) than the one converted."""
    out = tmp_path / "out"
    prepare_videos(src, out, size=32, split=SPLIT)
    converted = out / output_name("a.mp4")
    before = (src / "a.mp4").stat().st_mtime_ns
    write_mp4(src / "a.mp4", bouncing_square(20, 32, seed=123))
    if older:
        os.utime(src / "a.mp4", ns=(before - 86400 * 10**9, before - 86400 * 10**9))
    again = prepare_videos(src, out, size=32, split=SPLIT)
    assert again.reused == len(GOOD)  # all but a.mp4, plus array.npy
    assert [item for item, _ in again.replaced] == [str(converted)]
    assert "another version of" in again.replaced[0][1]
    assert np.load(converted).shape == (20, 32, 32, 3)
    index = json.loads((out / "index.json").read_text())
    assert {v["name"]: v["frames"] for v in index["videos"]}["a.mp4"] == 20
    assert prepare_videos(src, out, size=32, split=SPLIT).reused == len(GOOD) + 1


def test_a_stamp_rounded_by_a_coarse_disk_clock_still_counts(src, tmp_path):
    """On FAT or ext3 the output stores its source's time rounded to whole seconds: reused; a
    time off by a nanosecond that is not so rounded is another version: converted again."""
    out = tmp_path / "out"
    prepare_videos(src, out, size=32, split=SPLIT)
    source = (src / "a.mp4").stat().st_mtime_ns
    converted = out / output_name("a.mp4")
    rounded = (source // 10**9 + 1) * 10**9
    os.utime(converted, ns=(rounded, rounded))
    assert prepare_videos(src, out, size=32, split=SPLIT).replaced == []
    os.utime(converted, ns=(source + 1, source + 1) if source % 10**9 else (source - 1,) * 2)
    assert len(prepare_videos(src, out, size=32, split=SPLIT).replaced) == 1


def test_refusals(src, tmp_path):
    with pytest.raises(ConfigError, match="lies inside --src"):
        prepare_videos(src, src / "prepared", size=32)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataSourceError, match="no file in"):
        prepare_videos(tmp_path / "nothing", tmp_path / "out", size=32)
    with pytest.raises(DataSourceError, match="test split .* would be empty"):
        prepare_videos(src, tmp_path / "out", size=32, split="test=0")
    assert not (tmp_path / "out" / "index.json").exists()
    with pytest.raises(ConfigError, match="--split"):
        prepare_videos(src, tmp_path / "out", size=32, split="test=2")


def test_datamodule_channels_follow_the_prepared_data(src, tmp_path):
    out = tmp_path / "grey"
    prepare_videos(src, out, size=32, channels=1, split=SPLIT, every=2, min_frames=7)
    tiny = [o for o in TINY if not o.startswith("data.num_digits")]
    cfg = compose_cfg(tmp_path, "+experiment=videos_lp", *tiny, f"data.data_dir={out}")
    validate_config(cfg)
    assert cfg.model.channels == 1
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert dm.channels == 1
    clip = dm.train_set[0]["frames"]
    assert clip.shape == (5, 1, 32, 32)
    # every=2 kept 8 of 16 frames (7 of 14 for the array)
    assert {v[2] for v in dm.train_set.videos} <= {7, 8}
    assert dm.train_set.videos[0][2] == 8
    a, b = dm.val_set[0]["frames"], dm.val_set[0]["frames"]
    assert (a == b).all()
    wrong = compose_cfg(tmp_path, "+experiment=videos_lp", *tiny, f"data.data_dir={out}",
                        "model.channels=3")  # fmt: skip
    with pytest.raises(
        ConfigError, match="model.channels=3 does not match the dataset, which has 1"
    ):
        validate_config(wrong)
    with pytest.raises(DataNotPreparedError, match="prepare videos"):
        VideosDataModule(str(tmp_path / "none"), image_size=32).setup("fit")
    with pytest.raises(DataNotPreparedError, match="data.image_size=32"):
        prepare_videos(src, tmp_path / "big", size=64, split=SPLIT)
        VideosDataModule(str(tmp_path / "big"), image_size=32).setup("fit")


@pytest.mark.slow
def test_documented_commands_end_to_end(src, tmp_path):
    """prepare, train, evaluate and sample as the README writes them."""
    done = run_cli("svg_lightning.data.prepare", tmp_path, "videos", "--src", str(src), "--out",
                   "data/mine", "--size", "32", "--split", SPLIT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skipped: 6" in done.stdout and "empty.mp4: InputError: empty file" in done.stdout
    tiny = [o for o in TINY if not o.startswith("data.num_digits")]
    # A sweep, as for the paper's datasets: two jobs, their summary, both scored and compared.
    done = run_cli("svg_lightning", tmp_path, "-m", "+experiment=videos_lp",
                   "data.data_dir=data/mine", *tiny, "data.num_workers=0",
                   "model.beta=1e-4,1e-3")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "videos_lp" / "multiruns").iterdir()
    rows = (sweep / "sweep_summary.csv").read_text().splitlines()
    assert len(rows) == 3 and "model.beta" in rows[0]
    ckpts = sorted(sweep.glob("*/checkpoints/last.ckpt"))
    assert len(ckpts) == 2
    evaluations = []
    for i, ckpt in enumerate(ckpts):
        out = tmp_path / f"eval{i}"
        done = run_cli("svg_lightning.evaluate", tmp_path, f"ckpt_path={ckpt}",
                       "eval.num_samples=2", "eval.num_videos=3", "trainer.accelerator=cpu",
                       f"hydra.run.dir={out}")  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        evaluations.append(str(out))
    metrics = json.loads((tmp_path / "eval0" / "metrics.json").read_text())
    assert metrics["protocol"]["n_past"] == 2
    done = run_cli("svg_lightning.evaluate.compare", tmp_path, *evaluations,
                   "--out", str(tmp_path / "compare.png"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "compare.png").stat().st_size > 0
    ckpt = ckpts[0]
    done = run_cli("svg_lightning.sample", tmp_path, f"ckpt_path={ckpt}", f"input={src / 'a.mp4'}",
                   "out=futures", "num_samples=2")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert np.load(tmp_path / "futures" / "samples.npy").shape == (2, 3, 3, 32, 32)
    done = run_cli("svg_lightning.analyze", tmp_path, "prior", f"ckpt_path={ckpt}")
    assert done.returncode != 0 and "Stochastic Moving MNIST" in done.stderr + done.stdout
