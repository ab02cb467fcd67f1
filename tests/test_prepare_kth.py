"""KTH preparation on tiny synthetic videos in the official naming, zipped and extracted."""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from svg_lightning.data.prepare.command import prepare_main
from svg_lightning.data.sources import kth
from svg_lightning.errors import ConfigError, DataSourceError
from tests.helpers.fixtures import cut_avi, write_kth_videos, write_stored_zip

# Mean absolute error allowed between prepared and written-then-resized frames, on 0-255. MJPEG at
# qscale 1 measures about 0.02 here; resizing with another filter (nearest, bilinear for bicubic)
# gives 0.3 - 1, a wrong channel, frame order or crop gives tens.
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


def resized(frames: np.ndarray, size: int, resize: str = "bicubic") -> np.ndarray:
    """The written frames resized as the reference's ffmpeg does (libswscale's bicubic, through
    PyAV), or with PIL's bilinear filter."""
    if resize == "bicubic":
        scale = [av.VideoFrame.from_ndarray(f, format="gray") for f in frames]
        img = [f.reformat(size, size, interpolation="BICUBIC").to_ndarray() for f in scale]
    else:
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
    assert index["resize"] == "bicubic"
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
    files = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert files == sorted([calls[0].name, kth.RESIZE_RECORD])
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
    # Only the record of the filter the next videos will use, which a rerun reads.
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [
        tmp_path / "kth64" / kth.RESIZE_RECORD
    ]


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


# --- Damaged inputs and outputs -----------------------------------------------------------------


def copy_of(kth_src: Path, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(kth_src, src)
    return src


def index_of(out: Path, size: int = 64) -> dict:
    return {
        v["name"]: v for v in json.loads((out / f"kth{size}" / "index.json").read_text())["videos"]
    }


def test_encrypted_or_unreadable_zip_members_are_skipped(kth_src, tmp_path):
    src = copy_of(kth_src, tmp_path)
    good = (src / "extracted" / "person01_handwaving_d1_uncomp.avi").read_bytes()
    members = [(f"person0{p}_jogging_d1_uncomp.avi", good) for p in (2, 3, 4)]
    write_stored_zip(
        src / "jogging.zip",
        members,
        encrypted={"person02_jogging_d1_uncomp.avi"},
        method={"person03_jogging_d1_uncomp.avi": 99},
    )
    summary = kth.prepare_kth(src, tmp_path / "out")
    skipped = dict(summary.skipped)
    assert set(skipped) == {
        "jogging.zip:person02_jogging_d1_uncomp.avi",
        "jogging.zip:person03_jogging_d1_uncomp.avi",
    }
    assert "encrypted" in skipped["jogging.zip:person02_jogging_d1_uncomp.avi"]
    assert "method 99" in skipped["jogging.zip:person03_jogging_d1_uncomp.avi"]
    videos = tmp_path / "out" / "kth64" / "videos"
    assert (videos / "person04_jogging_d1.npy").is_file()  # the readable member of the same zip
    assert not (videos / "person02_jogging_d1.npy").exists()
    assert not (videos / "person03_jogging_d1.npy").exists()
    assert set(index_of(tmp_path / "out")) == set(VIDEOS) | {"person04_jogging_d1"}


def test_a_corrupt_extracted_copy_gives_way_to_the_zip_copy(kth_src, tmp_path):
    src = copy_of(kth_src, tmp_path)
    extracted = src / "extracted" / "person01_boxing_d1_uncomp.avi"
    extracted.write_bytes(np.random.default_rng(0).bytes(extracted.stat().st_size))
    summary = kth.prepare_kth(src, tmp_path / "out")
    [(item, reason)] = summary.skipped
    assert item == str(extracted)
    assert reason.endswith("used boxing.zip:person01_boxing_d1_uncomp.avi instead")
    assert summary.videos == len(VIDEOS)
    got = np.load(tmp_path / "out" / "kth64" / "videos" / "person01_boxing_d1.npy")
    assert np.abs(got.astype(float) - resized(frames_for(0, 10), 64)).mean() < TOLERANCE
    assert index_of(tmp_path / "out")["person01_boxing_d1"]["frames"] == 10


def test_an_avi_missing_its_last_frame_is_skipped_and_converted_once_repaired(kth_src, tmp_path):
    """Cut between frames, all frames left decode and the decoder says nothing; the AVI header
    still counts 9 (within HEADER_SLACK of the 8 that decode), and the RIFF size shows the cut."""
    src = copy_of(kth_src, tmp_path)
    avi = src / "extracted" / "person01_handwaving_d1_uncomp.avi"
    good = avi.read_bytes()
    avi.write_bytes(cut_avi(good, keep=8))
    with pytest.raises(kth.VideoError, match="8 of the 9 frames"):
        kth.read_video(avi, 64)
    out = tmp_path / "out"
    summary = kth.prepare_kth(src, out)
    [(item, reason)] = summary.skipped
    assert item == str(avi) and "truncated" in reason and "RIFF" in reason
    assert not (out / "kth64" / "videos" / "person01_handwaving_d1.npy").exists()
    assert "person01_handwaving_d1" not in index_of(out)

    avi.write_bytes(good)  # the repaired source is converted, not reported again
    again = kth.prepare_kth(src, out)
    assert (again.reused, again.skipped, again.videos) == (len(VIDEOS) - 1, [], len(VIDEOS))
    assert index_of(out)["person01_handwaving_d1"]["frames"] == 9


BAD_SEQUENCES = """person01_boxing_d1 frames 1-4, 5-8, 9-10
person01_boxing_d1 frames 1-10
person21_boxing_d2 frames 0-3, 6-4, 4-6, 7-x, -2-5
person20_boxing_d4 frames 1-5, 6-12, 10-20
person25_walking_d3 1-12
person21_running_d2 frames
"""


def test_sequences_lines_are_validated_and_fitted_to_the_videos(kth_src, tmp_path):
    src = copy_of(kth_src, tmp_path)
    seq = src / "docs" / kth.SEQUENCES_FILE
    seq.write_text(BAD_SEQUENCES)
    summary = kth.prepare_kth(src, tmp_path / "out")
    got = sorted(summary.skipped)
    want = sorted(
        (f"{seq} line {n}", why)
        for n, why in [
            (2, "person01_boxing_d1 is listed again (first on line 1); ignored"),
            (3, "person21_boxing_d2: segment '0-3' starts at frame 0, but frames count from 1; "
                "segment left out"),
            (3, "person21_boxing_d2: segment '6-4' ends before it starts; segment left out"),
            (3, "person21_boxing_d2: segment '7-x' is not a range of frame numbers like 1-95; "
                "segment left out"),
            (3, "person21_boxing_d2: segment '-2-5' is not a range of frame numbers like 1-95; "
                "segment left out"),
            (4, "person20_boxing_d4: segment '6-12' ends after the video's last frame (8); "
                "clipped to 6-8"),
            (4, "person20_boxing_d4: segment '10-20' starts after the video's last frame (8); "
                "segment left out"),
            (5, "person25_walking_d3: expected 'person25_walking_d3 frames A-B, C-D, ...'; "
                "line ignored"),
            (6, "person21_running_d2: no segment listed"),
        ]
    )  # fmt: skip
    assert got == want
    segments = {name: v["segments"] for name, v in index_of(tmp_path / "out").items()}
    assert segments == {
        "person01_boxing_d1": [[0, 4], [4, 8], [8, 10]],  # the first line, not the duplicate
        "person21_boxing_d2": [[3, 6]],
        "person20_boxing_d4": [[0, 5], [5, 8]],
        "person25_walking_d3": None,
        "person21_running_d2": [],
        "person01_handwaving_d1": None,
    }
    assert summary.videos == len(VIDEOS)  # a bad line costs segments, never a video


def test_upper_case_file_names_are_accepted(kth_src, tmp_path):
    src = tmp_path / "SRC"
    src.mkdir()
    good = (kth_src / "extracted" / "person01_handwaving_d1_uncomp.avi").read_bytes()
    (src / "PERSON22_WALKING_D2_UNCOMP.AVI").write_bytes(good)
    write_stored_zip(src / "Boxing.zip", [("BOXING/PERSON02_BOXING_D1_UNCOMP.AVI", good)])
    (src / "00SEQUENCES.TXT").write_text("PERSON02_BOXING_D1 FRAMES 1-4, 5-9\n")
    summary = kth.prepare_kth(src, tmp_path / "out")
    assert (summary.videos, summary.skipped) == (2, [])
    index = index_of(tmp_path / "out")
    assert index["person02_boxing_d1"]["segments"] == [[0, 4], [4, 9]]
    assert (index["person02_boxing_d1"]["split"], index["person22_walking_d2"]["split"]) == (
        "train",
        "test",
    )
    videos = tmp_path / "out" / "kth64" / "videos"
    assert sorted(p.name for p in videos.iterdir()) == [
        "person02_boxing_d1.npy",
        "person22_walking_d2.npy",
    ]


def test_invalid_reused_outputs_are_converted_again(kth_src, tmp_path):
    out = tmp_path / "out"
    kth.prepare_kth(kth_src, out)
    videos = out / "kth64" / "videos"
    first = {p.stem: np.load(p) for p in videos.iterdir()}
    damage = {
        "person01_boxing_d1": lambda p: p.write_bytes(b"\x00garbage" * 50),
        "person20_boxing_d4": lambda p: p.write_bytes(b""),
        "person21_boxing_d2": lambda p: p.write_bytes(p.read_bytes()[:-100]),
        "person25_walking_d3": lambda p: np.save(p, first[p.stem].astype(np.float32)),
        "person01_handwaving_d1": lambda p: np.save(p, np.zeros((9, 32, 32), np.uint8)),
    }
    for name, spoil in damage.items():
        spoil(videos / f"{name}.npy")
    summary = kth.prepare_kth(kth_src, out)
    replaced = dict(summary.replaced)
    assert set(replaced) == {str(videos / f"{name}.npy") for name in damage}
    why = {Path(file).stem: reason for file, reason in replaced.items()}
    assert "not a readable .npy" in why["person01_boxing_d1"]
    assert "not a readable .npy" in why["person20_boxing_d4"]
    assert "mmap length" in why["person21_boxing_d2"]
    assert "float32" in why["person25_walking_d3"]
    assert "(9, 32, 32)" in why["person01_handwaving_d1"]
    assert (summary.reused, summary.skipped) == (1, [])
    assert "replaced: 5 invalid or out-of-date output files of an earlier run" in summary.lines()
    for name, array in first.items():
        np.testing.assert_array_equal(np.load(videos / f"{name}.npy"), array)


def test_a_split_without_videos_is_an_error_and_writes_no_index(kth_src, tmp_path, capsys):
    src = copy_of(kth_src, tmp_path)
    for avi in [src / "extracted" / "person21_running_d2_uncomp.avi"]:
        avi.write_bytes(b"RIFF" + b"\x00" * 100)
    (src / "boxing.zip").unlink()  # holds persons 01, 20 and 21
    (src / "walking.zip").unlink()  # holds person 25
    out = tmp_path / "out"
    (out / "kth64").mkdir(parents=True)
    (out / "kth64" / "index.json").write_text("{}")  # an earlier run's
    assert prepare_main(["kth", "--src", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the KTH test split would be empty") and "\n" not in err
    assert "person21_running_d2_uncomp.avi" in err and "persons 21-25" in err
    assert not (out / "kth64" / "index.json").exists()
    # The finished training videos stay for the rerun.
    assert sorted(p.stem for p in (out / "kth64" / "videos").iterdir()) == [
        "person01_boxing_d1",
        "person01_handwaving_d1",
    ]


def test_umask_mode_and_stale_temporaries(kth_src, tmp_path, capsys):
    out = tmp_path / "out"
    videos = out / "kth64" / "videos"
    videos.mkdir(parents=True)
    stale = [
        videos / ".person01_boxing_d1.npy.k2j_9xq1.tmp",
        out / "kth64" / ".index.json.a1b2c3d4.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half written")
    kept = [videos / "notes.tmp", videos / ".keep.tmp"]  # not the pattern of atomic_path
    for path in kept:
        path.write_bytes(b"mine")
    old = os.umask(0o027)
    try:
        code = prepare_main(["kth", "--src", str(kth_src), "--out", str(out)])
    finally:
        os.umask(old)
    assert code == 0
    assert "removed 2 temporary files left by an interrupted run" in capsys.readouterr().out
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
    written = [out / "kth64" / "index.json", *videos.glob("*.npy")]
    assert len(written) == len(VIDEOS) + 1
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o640}


def test_videos_listed_in_sequences_but_in_no_archive_are_reported(kth_src, tmp_path, capsys):
    """The real KTH lists person13_handclapping_d3 in 00sequences.txt but ships no such video."""
    src = copy_of(kth_src, tmp_path)
    seq = src / "docs" / kth.SEQUENCES_FILE
    seq.write_text(SEQUENCES + "person13_handclapping_d3 frames 1-5\n")
    assert prepare_main(["kth", "--src", str(src), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out.splitlines()
    at = out.index("listed, not found: 1")
    assert out[at + 1] == f"  person13_handclapping_d3: listed in {seq} line 6, in no archive"
    assert "skipped: 0" in out


def test_frames_are_shrunk_with_ffmpegs_scaler_as_the_reference(kth_src, tmp_path):
    """The reference's `ffmpeg -s 64x64` scales with libswscale's bicubic filter; decoding the same
    AVI and scaling each frame with it (PyAV calls that libswscale) gives the prepared frames."""
    kth.prepare_kth(kth_src, tmp_path)
    avi = kth_src / "extracted" / "person01_handwaving_d1_uncomp.avi"
    with av.open(str(avi)) as container:
        want = [
            f.reformat(64, 64, "gray", interpolation="BICUBIC").to_ndarray()
            for f in container.decode(video=0)
        ]
    got = np.load(tmp_path / "kth64" / "videos" / "person01_handwaving_d1.npy")
    np.testing.assert_array_equal(got, np.stack(want))


def test_bilinear_resize_is_an_option_and_a_change_of_filter_converts_again(kth_src, tmp_path):
    args = ["kth", "--src", str(kth_src), "--out", str(tmp_path), "--resize", "bilinear"]
    assert prepare_main(args) == 0
    root = tmp_path / "kth64"
    assert index_of(tmp_path)["person01_boxing_d1"]["frames"] == 10
    assert json.loads((root / "index.json").read_text())["resize"] == "bilinear"
    got = np.load(root / "videos" / "person01_boxing_d1.npy")
    for resize, same in (("bilinear", True), ("bicubic", False)):
        error = np.abs(got.astype(float) - resized(frames_for(0, 10), 64, resize)).mean()
        assert (error < TOLERANCE) == same, (resize, error)
    summary = kth.prepare_kth(kth_src, tmp_path)  # the default, bicubic: nothing is reused
    assert summary.reused == 0
    assert summary.replaced == [
        (f"{len(VIDEOS)} videos in {root / 'videos'}", "made with resize=bilinear; converted "
         "again with resize=bicubic")
    ]  # fmt: skip
    got = np.load(root / "videos" / "person01_boxing_d1.npy")
    assert np.abs(got.astype(float) - resized(frames_for(0, 10), 64)).mean() < TOLERANCE
    assert json.loads((root / "index.json").read_text())["resize"] == "bicubic"


def test_videos_prepared_before_the_filter_was_recorded_count_as_bilinear(kth_src, tmp_path):
    kth.prepare_kth(kth_src, tmp_path, resize="bilinear")
    (tmp_path / "kth64" / kth.RESIZE_RECORD).unlink()
    assert kth.prepare_kth(kth_src, tmp_path, resize="bilinear").reused == len(VIDEOS)
    assert kth.prepare_kth(kth_src, tmp_path).reused == 0
    with pytest.raises(ConfigError, match="resize='area' is not a KTH resize filter"):
        kth.prepare_kth(kth_src, tmp_path, resize="area")
