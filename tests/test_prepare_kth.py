"""KTH preparation on tiny synthetic videos in the official naming, zipped and extracted."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from svg_lightning.data.sources import kth
from svg_lightning.errors import DataSourceError
from tests.helpers.fixtures import write_kth_videos

# Mean absolute error allowed between prepared and written-then-resized frames, on 0-255. MJPEG at
# qscale 1 measures about 0.02 here; resizing with nearest instead of bilinear gives 0.3 - 1, a
# wrong channel, frame order or crop gives tens.
TOLERANCE = 0.25

SEQUENCES = """\
# some header line
person01_boxing_d1\t\tframes\t1-4, 5-8,9-10

person21_boxing_d2 frames 1-3,   4-10
person99_nothing_d1 frames 1-2
"""


def frames_for(seed: int, n: int) -> np.ndarray:
    """(n, 120, 160) gray frames: a bright box moving by a known step on a gray background."""
    out = np.full((n, 120, 160), 60 + 10 * seed, np.uint8)
    for t in range(n):
        y, x = 10 + 6 * t, 5 + 9 * t + seed
        out[t, y : y + 40, x : x + 50] = 220
    return out


def resized(frames: np.ndarray, size: int) -> np.ndarray:
    img = [Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR) for f in frames]
    return np.stack([np.asarray(i) for i in img])


# name -> (seed, frames, where): zipped ones go into <class>.zip under a folder like the official.
VIDEOS = {
    "person01_boxing_d1": (0, 10, "zip"),
    "person20_boxing_d4": (1, 8, "zip"),
    "person21_boxing_d2": (2, 10, "zip"),
    "person25_walking_d3": (3, 12, "zip"),
    "person01_handwaving_d1": (4, 9, "avi"),
    "person21_running_d2": (5, 11, "avi"),
}


@pytest.fixture(scope="module")
def kth_src(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("kth_src")
    staging = tmp_path_factory.mktemp("staging")
    write_kth_videos(
        src,
        staging,
        [(name, frames_for(seed, n), where) for name, (seed, n, where) in VIDEOS.items()],
    )
    # Also extracted: must be taken once.
    (src / "extracted" / "person01_boxing_d1_uncomp.avi").write_bytes(
        (staging / "person01_boxing_d1_uncomp.avi").read_bytes()
    )
    (src / "docs").mkdir()
    (src / "docs" / kth.SEQUENCES_FILE).write_text(SEQUENCES)
    return src


def test_parse_sequences():
    seq = kth.parse_sequences(SEQUENCES)
    assert seq == {
        "person01_boxing_d1": [(0, 4), (4, 8), (8, 10)],
        "person21_boxing_d2": [(0, 3), (3, 10)],
    }


def test_find_sources_deduplicates(kth_src):
    found = kth.find_sources(kth_src)
    assert [s.name for s in found.videos] == sorted(VIDEOS)
    boxing = next(s for s in found.videos if s.name == "person01_boxing_d1")
    assert boxing.member is None  # the extracted copy is preferred
    assert found.sequences == kth_src / "docs" / kth.SEQUENCES_FILE


@pytest.mark.parametrize("size", [64, 128])
def test_prepare(kth_src, tmp_path, size):
    summary = kth.prepare_kth(kth_src, tmp_path, size=size)
    root = tmp_path / f"kth{size}"
    assert summary.out == root
    assert (summary.videos, summary.reused, summary.skipped) == (len(VIDEOS), 0, [])
    assert summary.frames == sum(n for _, n, _ in VIDEOS.values())
    errors = []
    for name, (seed, n, _) in VIDEOS.items():
        got = np.load(root / "videos" / f"{name}.npy", mmap_mode="r")
        assert got.dtype == np.uint8 and got.shape == (n, size, size)
        errors.append(np.abs(got.astype(float) - resized(frames_for(seed, n), size)).mean())
    assert max(errors) < TOLERANCE, errors

    index = json.loads((root / "index.json").read_text())
    assert (index["dataset"], index["size"], index["sequences_file"]) == ("kth", size, True)
    by_name = {v["name"]: v for v in index["videos"]}
    assert sorted(by_name) == sorted(VIDEOS)
    assert by_name["person21_boxing_d2"] == {
        "name": "person21_boxing_d2",
        "person": 21,
        "action": "boxing",
        "scenario": 2,
        "split": "test",
        "frames": 10,
        "file": "videos/person21_boxing_d2.npy",
        "segments": [[0, 3], [3, 10]],
    }
    assert by_name["person01_boxing_d1"]["segments"] == [[0, 4], [4, 8], [8, 10]]
    assert by_name["person25_walking_d3"]["segments"] is None
    splits = {v["name"]: v["split"] for v in index["videos"]}
    assert {n for n, s in splits.items() if s == "train"} == {
        "person01_boxing_d1",
        "person20_boxing_d4",
        "person01_handwaving_d1",
    }
    assert all(v["frames"] == VIDEOS[v["name"]][1] for v in index["videos"])


def test_frame_order_is_checked(kth_src, tmp_path):
    """The tolerance check above can fail: reversed frames are far outside it."""
    kth.prepare_kth(kth_src, tmp_path)
    got = np.load(tmp_path / "kth64" / "videos" / "person01_boxing_d1.npy")
    want = resized(frames_for(0, 10), 64)
    assert np.abs(got.astype(float) - want[::-1]).mean() > 5 * TOLERANCE


def test_bad_videos_are_skipped(kth_src, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(kth_src, src)
    good = (src / "extracted" / "person01_handwaving_d1_uncomp.avi").read_bytes()
    rng = np.random.default_rng(0)
    (src / "person02_jogging_d1_uncomp.avi").write_bytes(rng.bytes(len(good)))
    (src / "person03_jogging_d1_uncomp.avi").write_bytes(good[: len(good) // 2])
    with zipfile.ZipFile(src / "jogging.zip", "w") as zf:  # a member that is not a video
        zf.writestr("person04_jogging_d1_uncomp.avi", b"not a video")
    summary = kth.prepare_kth(src, tmp_path / "out")
    skipped = dict(summary.skipped)
    assert set(skipped) == {
        str(src / "person02_jogging_d1_uncomp.avi"),
        str(src / "person03_jogging_d1_uncomp.avi"),
        "jogging.zip:person04_jogging_d1_uncomp.avi",
    }
    assert summary.videos == len(VIDEOS)
    videos = tmp_path / "out" / "kth64" / "videos"
    assert sorted(p.stem for p in videos.iterdir()) == sorted(VIDEOS)
    index = json.loads((tmp_path / "out" / "kth64" / "index.json").read_text())
    assert len(index["videos"]) == len(VIDEOS)
    lines = summary.lines()
    assert all(any(line.startswith(f"  {item}: ") for line in lines) for item in skipped)


def test_truncated_video_is_detected(kth_src, tmp_path):
    good = (kth_src / "extracted" / "person01_handwaving_d1_uncomp.avi").read_bytes()
    bad = tmp_path / "person03_jogging_d1_uncomp.avi"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises((kth.VideoError, av.error.FFmpegError)):
        kth.read_video(bad, 64)


def test_resume_after_interrupt(kth_src, tmp_path, monkeypatch):
    real_save = kth.save_npy
    calls = []

    def save_then_stop(path, array):
        real_save(path, array)
        calls.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(kth, "save_npy", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        kth.prepare_kth(kth_src, tmp_path)
    root = tmp_path / "kth64"
    assert [p.name for p in root.rglob("*") if p.is_file()] == [calls[0].name]
    assert not (root / "index.json").exists()

    monkeypatch.setattr(kth, "save_npy", real_save)
    summary = kth.prepare_kth(kth_src, tmp_path)
    assert (summary.videos, summary.reused) == (len(VIDEOS), 1)
    assert summary.frames == sum(n for _, n, _ in VIDEOS.values())
    assert sorted(p.stem for p in (root / "videos").iterdir()) == sorted(VIDEOS)
    assert not list(root.rglob("*.tmp"))
    index = json.loads((root / "index.json").read_text())
    assert {v["name"]: v["frames"] for v in index["videos"]} == {
        n: f for n, (_, f, _) in VIDEOS.items()
    }


def test_interrupt_mid_write_leaves_no_partial_file(kth_src, tmp_path, monkeypatch):
    def fail(f, array):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", fail)
    with pytest.raises(KeyboardInterrupt):
        kth.prepare_kth(kth_src, tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("make", ["missing", "empty", "unrelated"])
def test_no_source_names_folder_and_archives(tmp_path, make):
    src = tmp_path / "kth_raw"
    if make != "missing":
        src.mkdir()
    if make == "unrelated":
        (src / "notes.txt").write_text("hello")
        (src / "person01_boxing_d1.avi").write_bytes(b"")  # not the official name
    with pytest.raises(DataSourceError) as err:
        kth.prepare_kth(src, tmp_path / "out")
    msg = str(err.value)
    assert str(src) in msg and "boxing.zip" in msg and "walking.zip" in msg
    assert "personXX_<class>_dY_uncomp.avi" in msg and "Schuldt" in msg
    assert not (tmp_path / "out").exists()
