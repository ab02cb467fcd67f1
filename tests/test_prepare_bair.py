"""prepare_bair on TFRecord files written here in the official BAIR format.

Examples are serialized by the protobuf runtime from tf.train.Example's schema (built in a private
descriptor pool), and framed with CRCs computed in tests/helpers/fixtures.py, independently of the
code under test.
"""

import json

import numpy as np
import pytest

from svg_lightning.data.sources import bair, storage
from svg_lightning.data.sources.bair import (
    RecordError,
    decode_example,
    iter_records,
    prepare_bair,
)
from svg_lightning.errors import DataSourceError
from tests.helpers.fixtures import Example, frame_record, make_tar, serialize, write_raw

# (split, stem, videos); numeric order of <a> differs from name order (1024 < 256 as text).
SHARDS = [
    ("train", "traj_0_to_255", 3),
    ("train", "traj_1024_to_1279", 1),
    ("train", "traj_256_to_511", 2),
    ("test", "traj_0_to_255", 2),
]


@pytest.fixture
def raw(tmp_path):
    return write_raw(tmp_path, np.random.default_rng(0), SHARDS)


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("source", ["tar", "softmotion30_44k", "parent"])
def test_prepared_arrays_equal_the_written_frames(tmp_path, raw, source):
    src = {
        "tar": lambda: make_tar(tmp_path),
        "softmotion30_44k": lambda: tmp_path / "raw" / "softmotion30_44k",
        "parent": lambda: tmp_path / "raw",
    }[source]()
    summary = prepare_bair(src, tmp_path / "out")
    out = tmp_path / "out" / "bair"
    assert summary.skipped == [] and summary.reused == 0
    assert summary.videos == 8 and summary.frames == 240 and summary.out == out
    for (split, stem), (videos, _) in raw.items():
        arr = np.load(out / split / f"{stem}.npy", mmap_mode="r")
        assert arr.dtype == np.uint8 and arr.shape == videos.shape
        np.testing.assert_array_equal(arr, videos)
    index = json.loads((out / "index.json").read_text())
    assert index == {
        "dataset": "bair",
        "splits": {
            "train": [
                {"file": "train/traj_0_to_255.npy", "videos": 3},
                {"file": "train/traj_256_to_511.npy", "videos": 2},
                {"file": "train/traj_1024_to_1279.npy", "videos": 1},
            ],
            "test": [{"file": "test/traj_0_to_255.npy", "videos": 2}],
        },
    }
    assert files_under(out) == sorted(
        ["index.json"] + [f"{split}/{stem}.npy" for split, stem, _ in SHARDS]
    )


def test_iter_records_yields_the_payloads_and_decode_example_the_frames(tmp_path, raw):
    videos, records = raw["train", "traj_0_to_255"]
    path = tmp_path / "raw" / "softmotion30_44k" / "train" / "traj_0_to_255.tfrecords"
    with open(path, "rb") as f:
        payloads = list(iter_records(f))
    assert [frame_record(p) for p in payloads] == records
    for payload, video in zip(payloads, videos, strict=True):
        np.testing.assert_array_equal(decode_example(payload), video)


def rewrite_record(tmp_path, raw, index, new_record):
    _, records = raw["train", "traj_0_to_255"]
    records = list(records)
    records[index] = new_record
    path = tmp_path / "raw" / "softmotion30_44k" / "train" / "traj_0_to_255.tfrecords"
    path.write_bytes(b"".join(records))
    return path


@pytest.mark.parametrize("damage", ["data crc", "protobuf", "frame size"])
def test_a_corrupt_record_is_reported_and_the_others_kept(tmp_path, raw, damage):
    videos, records = raw["train", "traj_0_to_255"]
    rng = np.random.default_rng(1)
    if damage == "data crc":
        bad = bytearray(records[1])
        bad[12 + 5000] ^= 0x01  # a pixel byte: still a valid Example, only the CRC tells
        bad = bytes(bad)
    elif damage == "protobuf":
        bad = frame_record(b"\x0a\xff\xff\xff\x0f" + b"\x00" * 40)  # length beyond the message
    else:
        bad = frame_record(serialize(videos[1], rng, frame_bytes=b"\x00" * (64 * 64 * 3 - 1)))
    rewrite_record(tmp_path, raw, 1, bad)
    summary = prepare_bair(tmp_path / "raw", tmp_path / "out")
    [(item, reason)] = summary.skipped
    assert item == "train/traj_0_to_255.tfrecords record 1"
    expected = {
        "data crc": "data CRC mismatch",
        "protobuf": "bad protobuf",
        "frame size": "frame 7",
    }
    assert expected[damage] in reason
    arr = np.load(tmp_path / "out" / "bair" / "train" / "traj_0_to_255.npy")
    np.testing.assert_array_equal(arr, videos[[0, 2]])
    assert summary.videos == 7


def test_a_truncated_file_keeps_the_records_before_the_damage(tmp_path, raw):
    videos, records = raw["train", "traj_0_to_255"]
    path = tmp_path / "raw" / "softmotion30_44k" / "train" / "traj_0_to_255.tfrecords"
    path.write_bytes(b"".join(records)[: len(records[0]) + len(records[1]) + 1000])
    with open(path, "rb") as f, pytest.raises(RecordError) as err:
        list(iter_records(f))
    assert err.value.index == 2 and "truncated" in str(err.value)
    summary = prepare_bair(make_tar(tmp_path), tmp_path / "out")
    [(item, reason)] = summary.skipped
    assert item == "train/traj_0_to_255.tfrecords record 2" and "truncated" in reason
    arr = np.load(tmp_path / "out" / "bair" / "train" / "traj_0_to_255.npy")
    np.testing.assert_array_equal(arr, videos[:2])


def test_a_bad_length_crc_stops_the_file_there(tmp_path, raw):
    _, records = raw["train", "traj_0_to_255"]
    bad = bytearray(records[1])
    bad[0] ^= 0x40
    path = rewrite_record(tmp_path, raw, 1, bytes(bad))
    with open(path, "rb") as f, pytest.raises(RecordError) as err:
        list(iter_records(f))
    assert err.value.index == 1 and "length CRC" in str(err.value)
    summary = prepare_bair(tmp_path / "raw", tmp_path / "out")
    assert [item for item, _ in summary.skipped] == ["train/traj_0_to_255.tfrecords record 1"]
    assert np.load(tmp_path / "out" / "bair" / "train" / "traj_0_to_255.npy").shape[0] == 1


def test_an_interrupted_run_leaves_no_partial_files_and_resumes(tmp_path, raw, monkeypatch):
    real_save, calls = np.save, []

    def save_then_interrupt(f, array, *args, **kwargs):
        calls.append(array.shape)
        if len(calls) == 1:
            return real_save(f, array, *args, **kwargs)
        f.write(b"\x93NUMPY partial")  # the second shard is half written when Ctrl-C lands
        raise KeyboardInterrupt

    monkeypatch.setattr(storage.np, "save", save_then_interrupt)
    src = make_tar(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        prepare_bair(src, tmp_path / "out")
    out = tmp_path / "out" / "bair"
    assert len(calls) == 2
    assert files_under(out) == ["train/traj_0_to_255.npy"]  # no temp file, no index.json
    monkeypatch.setattr(storage.np, "save", real_save)

    summary = prepare_bair(src, tmp_path / "out")
    assert summary.reused == 1 and summary.videos == 8 and summary.skipped == []
    assert len(files_under(out)) == len(SHARDS) + 1
    for (split, stem), (videos, _) in raw.items():
        np.testing.assert_array_equal(np.load(out / split / f"{stem}.npy"), videos)
    index = json.loads((out / "index.json").read_text())
    assert sum(s["videos"] for s in index["splits"]["train"]) == 6


@pytest.mark.parametrize("where", ["nothing", "empty folder", "train only", "not a tar"])
def test_missing_inputs_say_what_is_expected(tmp_path, where):
    src = tmp_path / "src"
    if where == "empty folder":
        src.mkdir()
    elif where == "train only":
        (src / "softmotion30_44k" / "train").mkdir(parents=True)
        (src / "softmotion30_44k" / "train" / "traj_0_to_255.tfrecords").write_bytes(b"")
    elif where == "not a tar":
        src = tmp_path / "bair_robot_pushing_dataset_v0.tar"
        src.write_bytes(b"not a tar" * 100)
    with pytest.raises(DataSourceError) as err:
        prepare_bair(src, tmp_path / "out")
    msg = str(err.value)
    assert str(src) in msg and "bair_robot_pushing_dataset_v0.tar" in msg
    assert "softmotion30_44k/test/*.tfrecords" in msg and "Ebert" in msg
    assert not (tmp_path / "out").exists()


def test_decode_example_names_a_missing_frame():
    ex = Example()
    ex.features.feature["0/image_aux1/encoded"].bytes_list.value.append(b"\x00" * 12288)
    with pytest.raises(bair.ExampleError, match="frame 1"):
        decode_example(ex.SerializeToString())
