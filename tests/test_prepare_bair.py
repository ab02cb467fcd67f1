"""prepare_bair on TFRecord files written here in the official BAIR format.

Examples are serialized by the protobuf runtime from tf.train.Example's schema (built in a private
descriptor pool), and framed with CRCs computed in tests/helpers/fixtures.py, independently of the
code under test.
"""

import fcntl
import gzip
import io
import json
import os
import stat
import struct
import tarfile

import numpy as np
import pytest

from svg_lightning.data.prepare.command import prepare_main
from svg_lightning.data.sources import bair, storage
from svg_lightning.data.sources.bair import (
    RecordError,
    decode_example,
    iter_records,
    prepare_bair,
)
from svg_lightning.errors import ConfigError, DataSourceError
from tests.helpers.fixtures import Example, frame_record, make_tar, mask, serialize, write_raw

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
    # Kept for training under a name that says it is incomplete; never taken as finished.
    arr = np.load(tmp_path / "out" / "bair" / "train" / "traj_0_to_255.partial.npy")
    np.testing.assert_array_equal(arr, videos[[0, 2]])
    assert not (tmp_path / "out" / "bair" / "train" / "traj_0_to_255.npy").exists()
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
    arr = np.load(tmp_path / "out" / "bair" / "train" / "traj_0_to_255.partial.npy")
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
    assert np.load(tmp_path / "out" / "bair" / "train" / "traj_0_to_255.partial.npy").shape[0] == 1


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


# --- Damaged archives, shards and outputs -------------------------------------------------------


def shard_path(tmp_path, split="train", stem="traj_0_to_255"):
    return tmp_path / "raw" / "softmotion30_44k" / split / f"{stem}.tfrecords"


def tar_members(tar_path):
    with tarfile.open(tar_path) as tar:
        return {m.name: m for m in tar.getmembers()}


@pytest.mark.parametrize(
    "cut",
    ["inside a header", "inside a pax header", "at a header", "damaged header", "in data", "gzip"],
)
def test_a_truncated_tar_is_refused_before_any_work(tmp_path, raw, capsys, cut):
    pax = cut in ("inside a pax header", "damaged header")
    tar_path = make_tar(tmp_path, tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT)
    members = tar_members(tar_path)
    last = "softmotion30_44k/train/traj_256_to_511.tfrecords"  # tar.add sorts: the last member
    before = "softmotion30_44k/train/traj_1024_to_1279.tfrecords"
    assert list(members)[-2:] == [before, last]
    data = tar_path.read_bytes()
    at = members[last].offset  # where its headers start (with pax, the extended one first)
    if cut.startswith("inside"):
        data = data[: at + 200]
    elif cut == "at a header":
        data = data[:at]
    elif cut == "damaged header":
        data = data[:at] + b"\xff" + data[at + 1 :]
    elif cut == "in data":
        data = data[: members[last].offset_data + 1000]
    else:  # a compressed tar, cut: only its decompressor can tell
        data = gzip.compress(data)[:-2000]
    tar_path.write_bytes(data)
    out = tmp_path / "out"
    assert prepare_main(["bair", "--src", str(tar_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tar_path} is ") and "\n" not in err and "Traceback" not in err
    expected = {
        "inside a header": f"ends 200 bytes into the header of '{last}' after {before}, so that "
        "file and any after it are missing",
        "inside a pax header": f"ends 200 bytes into the header of the next file after {before}",
        "at a header": f"ends without the end-of-archive marker after {before}, so any files after "
        "it are missing",
        "damaged header": f"the header of the next file after {before} cannot be read, so that "
        "file and any after it are missing",
        "in data": f"ends 1000 of {members[last].size} bytes into {last}, so that file and any "
        "after it are missing",
        "gzip": f"is truncated or damaged in or after {last} (Compressed file ended before the "
        "end-of-stream marker was reached): that file and any after it may be missing",
    }[cut]
    assert expected in err
    assert not out.exists()


def test_a_record_length_beyond_the_file_is_never_read(tmp_path, raw):
    videos, records = raw["train", "traj_0_to_255"]
    huge = struct.pack("<Q", 1 << 40)  # a length whose CRC holds, for more bytes than exist
    bogus = huge + struct.pack("<I", mask(bair.google_crc32c.value(huge))) + b"\x00" * 64
    shard_path(tmp_path).write_bytes(records[0] + bogus + records[1])

    reads = []

    class Spy(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    with pytest.raises(RecordError) as err:
        list(iter_records(Spy(shard_path(tmp_path).read_bytes())))
    assert err.value.index == 1 and "1099511627776 data bytes" in str(err.value)
    assert max(reads) < 1 << 20  # the length was checked, not used

    summary = prepare_bair(make_tar(tmp_path), tmp_path / "out")  # through tarfile.extractfile
    [(item, reason)] = summary.skipped
    assert item == "train/traj_0_to_255.tfrecords record 1"
    assert "truncated" in reason and f"only {64 + len(records[1])} bytes are left" in reason
    arr = np.load(tmp_path / "out" / "bair" / "train" / "traj_0_to_255.partial.npy")
    np.testing.assert_array_equal(arr, videos[:1])


def test_a_shard_that_lost_records_is_read_again_once_repaired(tmp_path, raw):
    videos, records = raw["train", "traj_0_to_255"]
    bad = bytearray(records[1])
    bad[12 + 5000] ^= 0x01
    rewrite_record(tmp_path, raw, 1, bytes(bad))
    out = tmp_path / "out" / "bair"
    first = prepare_bair(tmp_path / "raw", tmp_path / "out")
    assert [item for item, _ in first.skipped] == ["train/traj_0_to_255.tfrecords record 1"]
    assert "train/traj_0_to_255.partial.npy" in files_under(out)
    assert "train/traj_0_to_255.npy" not in files_under(out)
    index = json.loads((out / "index.json").read_text())
    assert index["splits"]["train"][0] == {"file": "train/traj_0_to_255.partial.npy", "videos": 2}

    shard_path(tmp_path).write_bytes(b"".join(records))  # repaired
    again = prepare_bair(tmp_path / "raw", tmp_path / "out")
    assert (again.reused, again.skipped, again.videos) == (len(SHARDS) - 1, [], 8)
    np.testing.assert_array_equal(np.load(out / "train" / "traj_0_to_255.npy"), videos)
    assert "train/traj_0_to_255.partial.npy" not in files_under(out)
    index = json.loads((out / "index.json").read_text())
    assert index["splits"]["train"][0] == {"file": "train/traj_0_to_255.npy", "videos": 3}


def test_a_split_without_videos_is_an_error_and_writes_no_index(tmp_path, raw, capsys):
    _, records = raw["test", "traj_0_to_255"]
    damaged = []
    for record in records:  # every test record fails its data CRC
        bad = bytearray(record)
        bad[12 + 5000] ^= 0x01
        damaged.append(bytes(bad))
    shard_path(tmp_path, "test").write_bytes(b"".join(damaged))
    out = tmp_path / "out" / "bair"
    out.mkdir(parents=True)
    (out / "index.json").write_text("{}")  # an earlier run's
    assert prepare_main(["bair", "--src", str(tmp_path / "raw"), "--out", str(out.parent)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: a BAIR split would be empty") and "\n" not in err
    assert "test: none of its 1 shards yields a video" in err
    assert "test/traj_0_to_255.tfrecords record 0: data CRC mismatch" in err
    assert not (out / "index.json").exists()
    # Complete shards stay for the rerun; the empty test shard leaves nothing.
    assert files_under(out) == sorted(f"train/{stem}.npy" for _, stem, _ in SHARDS[:3])


def test_an_invalid_reused_shard_is_converted_again(tmp_path, raw):
    prepare_bair(tmp_path / "raw", tmp_path / "out")
    target = tmp_path / "out" / "bair" / "train" / "traj_256_to_511.npy"
    np.save(target, np.zeros((2, 30, 32, 32, 3), np.uint8))  # another frame size
    summary = prepare_bair(tmp_path / "raw", tmp_path / "out")
    [(file, reason)] = summary.replaced
    assert file == str(target) and "(2, 30, 32, 32, 3)" in reason and "converted again" in reason
    assert summary.reused == len(SHARDS) - 1
    np.testing.assert_array_equal(np.load(target), raw["train", "traj_256_to_511"][0])


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_mode_of_a_plain_open(tmp_path, raw, umask):
    old = os.umask(umask)
    try:
        prepare_bair(tmp_path / "raw", tmp_path / "out")
    finally:
        os.umask(old)
    out = tmp_path / "out" / "bair"
    modes = {stat.S_IMODE((out / f).stat().st_mode) for f in files_under(out)}
    assert modes == {0o666 & ~umask}


def test_stale_temporaries_are_removed_and_counted(tmp_path, raw, capsys):
    out = tmp_path / "out" / "bair"
    (out / "train").mkdir(parents=True)
    (out / "train" / ".traj_0_to_255.npy.abcd_123.tmp").write_bytes(b"\x93NUMPY partial")
    (out / ".index.json.zzzzzzzz.tmp").write_text("{")
    (out / "train" / "mine.tmp").write_text("not ours")
    code = prepare_main(["bair", "--src", str(tmp_path / "raw"), "--out", str(out.parent)])
    assert code == 0
    assert "removed 2 temporary files left by an interrupted run" in capsys.readouterr().out
    assert files_under(out) == sorted(
        ["index.json", "train/mine.tmp"] + [f"{split}/{stem}.npy" for split, stem, _ in SHARDS]
    )


def test_a_second_run_into_the_same_folder_is_refused(tmp_path, raw):
    out = tmp_path / "out" / "bair"
    out.mkdir(parents=True)
    (out / ".index.json.abcdefgh.tmp").write_text("{")  # the running one's
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running preparation holds
        with pytest.raises(ConfigError, match=f"another preparation run is writing into {out}"):
            prepare_bair(tmp_path / "raw", tmp_path / "out")
    finally:
        os.close(fd)
    assert files_under(out) == [".index.json.abcdefgh.tmp"]


def test_a_gzip_compressed_shard_is_read(tmp_path, raw):
    """TensorFlow's TFRecordWriter with compression_type='GZIP' gzips the whole framed file."""
    path = tmp_path / "raw" / "softmotion30_44k" / "train" / "traj_0_to_255.tfrecords"
    path.write_bytes(gzip.compress(path.read_bytes()))
    summary = prepare_bair(tmp_path / "raw", tmp_path / "out")
    assert summary.skipped == [] and summary.videos == 8
    arr = np.load(tmp_path / "out" / "bair" / "train" / "traj_0_to_255.npy")
    np.testing.assert_array_equal(arr, raw["train", "traj_0_to_255"][0])


def test_a_gzip_shard_cut_short_keeps_the_records_before_the_cut(tmp_path, raw):
    path = tmp_path / "raw" / "softmotion30_44k" / "train" / "traj_0_to_255.tfrecords"
    _, records = raw["train", "traj_0_to_255"]
    path.write_bytes(gzip.compress(path.read_bytes())[:-2000])
    summary = prepare_bair(tmp_path / "raw", tmp_path / "out")
    ((item, why),) = summary.skipped
    assert item == "train/traj_0_to_255.tfrecords record 2" and "later records are lost" in why
    kept = np.load(tmp_path / "out" / "bair" / "train" / "traj_0_to_255.partial.npy")
    np.testing.assert_array_equal(kept, raw["train", "traj_0_to_255"][0][:2])
