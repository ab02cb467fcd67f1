"""BAIR robot pushing (softmotion30_44k TFRecords) -> memory-mappable ``.npy`` shards, no TF.

The official ``bair_robot_pushing_dataset_v0.tar`` is read in place (no extraction): each
``softmotion30_44k/{train,test}/traj_<a>_to_<b>.tfrecords`` becomes ``bair/{split}/<stem>.npy``,
uint8 (videos, 30, 64, 64, 3), and ``bair/index.json`` lists the shards for ``BAIRDataModule``.
A shard that lost records to damage keeps its good videos in ``<stem>.partial.npy`` instead, which
a rerun never reuses. A truncated tar is refused before any work.

Records are framed as TFRecord (length, masked CRC32C of the length, data, masked CRC32C of the
data) and hold a serialized ``tf.train.Example``. The Example is decoded by the small protobuf
wire-format reader below rather than generated protobuf code: it needs no protobuf runtime whose
version must match the generated code, and registers no ``tensorflow.Example`` in the global
descriptor pool, where it would clash with TensorFlow or another package shipping the same proto.
"""

from __future__ import annotations

import functools
import gzip
import io
import logging
import lzma
import os
import re
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import google_crc32c
import numpy as np

from svg_lightning.data.sources.storage import (
    PrepareSummary,
    output_folder,
    progress_bar,
    remove_stale_index,
    reusable_rows,
    save_npy,
)
from svg_lightning.errors import DataSourceError
from svg_lightning.files import write_json

log = logging.getLogger(__name__)

FRAMES, SIZE, CHANNELS = 30, 64, 3
FRAME_BYTES = SIZE * SIZE * CHANNELS
IMAGE_KEY = "{}/image_aux1/encoded"  # raw RGB bytes despite the name (not PNG)
TAR_NAME = "bair_robot_pushing_dataset_v0.tar"
ROOT = "softmotion30_44k"
SPLITS = ("train", "test")
SHAPE = (FRAMES, SIZE, SIZE, CHANNELS)
_MASK_DELTA = 0xA282EAD8
_GZIP_MAGIC = b"\x1f\x8b"
# The most one read asks for: a record length the file cannot back costs no more memory than the
# bytes the file actually holds, even where its size is unknown.
_READ_CHUNK = 1 << 24
# What reading a damaged or cut archive can raise (compressed tars fail in their decompressor).
_ARCHIVE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)


class RecordError(ValueError):
    """A damaged TFRecord. ``index`` is its 0-based position in the file; ``resumable`` is True
    when only the data is bad and the framing held, so the records after it can still be read."""

    def __init__(self, index: int, reason: str, resumable: bool = False):
        super().__init__(f"record {index}: {reason}")
        self.index, self.reason, self.resumable = index, reason, resumable


class ExampleError(ValueError):
    """A record whose payload is not a tf.train.Example holding 30 raw 64 x 64 RGB frames."""


# --- TFRecord framing ---------------------------------------------------------------------------


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C; masking keeps a CRC of data that embeds CRCs well distributed."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _read_exact(fileobj: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at end of file (a raw stream may return short reads)."""
    parts, got = [], 0
    while got < size and (more := fileobj.read(min(size - got, _READ_CHUNK))):
        parts.append(more)
        got += len(more)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _end(fileobj: BinaryIO) -> int | None:
    """The stream's length (a file, or a tar member from ``extractfile``), None if unseekable or
    gzip-compressed: finding that length would decompress the whole file an extra time (and fail
    on a cut one), while ``_read_exact`` bounds every read by the bytes there are anyway."""
    if isinstance(fileobj, gzip.GzipFile):
        return None
    try:
        pos = fileobj.tell()
        end = fileobj.seek(0, os.SEEK_END)
        fileobj.seek(pos)
        return end
    except (OSError, AttributeError, ValueError):
        return None


def read_record(fileobj: BinaryIO, index: int, left: int | None = None) -> bytes | None:
    """The next record's data, or None at a clean end of file; RecordError if damaged. ``left``
    is the number of bytes from here to the end of the file, when known. The length is checked
    (against its CRC, then against ``left``) before it is used, so a corrupt header never triggers
    a huge read."""
    header = _read_exact(fileobj, 12)
    if not header:
        return None
    if len(header) < 12:
        raise RecordError(index, f"truncated: the file ends {len(header)} bytes into its header")
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != length_crc:
        raise RecordError(index, "length CRC mismatch: the record framing is corrupt")
    if left is not None and length + 16 > left:
        raise RecordError(
            index,
            f"truncated: its header gives {length} data bytes (and a 4-byte CRC) but only "
            f"{left - 12} bytes are left in the file",
        )
    data = _read_exact(fileobj, length)
    footer = _read_exact(fileobj, 4)
    if len(footer) < 4:
        raise RecordError(index, f"truncated: the file ends {len(data)} of {length} bytes in")
    if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        raise RecordError(index, "data CRC mismatch", resumable=True)
    return data


def iter_records(fileobj: BinaryIO) -> Iterator[bytes]:
    """Every record's data, CRC-checked; any file object works (e.g. ``tarfile.extractfile``).
    Where the object is seekable, each length is checked against the bytes left."""
    end, index = _end(fileobj), 0
    while (data := read_record(fileobj, index, _left(fileobj, end))) is not None:
        yield data
        index += 1


def _left(fileobj: BinaryIO, end: int | None) -> int | None:
    return None if end is None else end - fileobj.tell()


def _decompressed(fileobj: BinaryIO) -> BinaryIO:
    """The TFRecord bytes of a seekable shard: ``fileobj`` itself, or a reader of its content
    when TensorFlow wrote it with ``compression_type='GZIP'``, which compresses the whole framed
    file. The gzip magic (1f 8b) is trusted only where the first 12 bytes are not a record header
    whose length CRC holds, since an uncompressed record's length may begin with those bytes."""
    head = _read_exact(fileobj, 12)
    fileobj.seek(0)
    plain = len(head) == 12 and masked_crc32c(head[:8]) == struct.unpack("<I", head[8:])[0]
    if plain or head[:2] != _GZIP_MAGIC:
        return fileobj
    return gzip.GzipFile(fileobj=fileobj, mode="rb")


# --- tf.train.Example, straight from the protobuf wire format -----------------------------------


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 64:
        if pos >= len(buf):
            raise ExampleError("bad protobuf: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise ExampleError("bad protobuf: varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview | None]]:
    """(field number, wire type, value) of one message: an int for a varint, a zero-copy view for
    a length-delimited field, None for the fixed-width ones (Example uses none we need)."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value = None
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ExampleError(f"bad protobuf: unsupported wire type {wire}")
        if number == 0 or pos > end:
            raise ExampleError("bad protobuf: invalid field or truncated message")
        yield number, wire, value


def _messages(buf: memoryview, number: int) -> Iterator[memoryview]:
    """The length-delimited occurrences of field ``number`` (repeated fields, or a message field
    that protobuf merges across occurrences)."""
    return (value for n, wire, value in _fields(buf) if n == number and wire == 2)


def _feature_map(data: bytes) -> dict[str, memoryview]:
    """Example.features (field 1) -> Features.feature map (field 1; entries: key 1, value 2)."""
    features = {}
    for block in _messages(memoryview(data), 1):
        for entry in _messages(block, 1):
            key, value = b"", memoryview(b"")  # proto3 defaults for absent entry fields
            for n, wire, v in _fields(entry):
                if wire == 2 and n == 1:
                    key = bytes(v)
                elif wire == 2 and n == 2:
                    value = v
            features[key.decode("utf-8", "replace")] = value
    return features


def _bytes_list(feature: memoryview) -> list[memoryview] | None:
    """Feature's bytes_list values (oneof member 1), or None if another member is set."""
    kind, values = None, []
    for n, wire, v in _fields(feature):
        if n in (1, 2, 3):  # the oneof: a later member replaces an earlier one
            values = values if n == kind else []
            kind = n
            if n == 1 and wire == 2:
                values += _messages(v, 1)
    return values if kind == 1 else None


def decode_example(data: bytes) -> np.ndarray:
    """One serialized Example -> uint8 (30, 64, 64, 3) from its ``{i}/image_aux1/encoded``
    features; ExampleError if a frame is missing, not bytes, or not exactly 64 x 64 x 3 bytes."""
    features = _feature_map(data)
    video = np.empty((FRAMES, SIZE, SIZE, CHANNELS), np.uint8)
    for i in range(FRAMES):
        key = IMAGE_KEY.format(i)
        if key not in features:
            raise ExampleError(f"frame {i}: no {key!r} feature")
        values = _bytes_list(features[key])
        if values is None or len(values) != 1 or len(values[0]) != FRAME_BYTES:
            found = "no bytes_list" if values is None else f"{[len(v) for v in values]} bytes"
            raise ExampleError(
                f"frame {i}: {key!r} holds {found}, expected one raw 64x64x3 RGB value "
                f"of {FRAME_BYTES} bytes"
            )
        video[i] = np.frombuffer(values[0], np.uint8).reshape(SIZE, SIZE, CHANNELS)
    return video


# --- Locating the inputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shard:
    split: str
    stem: str
    open: Callable[[], BinaryIO]

    @property
    def label(self) -> str:
        return f"{self.split}/{self.stem}.tfrecords"

    def sort_key(self) -> tuple:
        """Train first, then by the first trajectory number ``<a>`` (name order would put traj_1024
        before traj_256)."""
        match = re.fullmatch(r"traj_(\d+)_to_\d+", self.stem)
        return (SPLITS.index(self.split), match is None, int(match[1]) if match else 0, self.stem)


def _tar_shards(path: Path, stack: ExitStack) -> list[_Shard]:
    try:
        tar = stack.enter_context(tarfile.open(path))
    except _ARCHIVE_ERRORS as err:
        raise DataSourceError(f"{path} is not a readable tar file ({err}). {_LAYOUT}") from err
    try:
        members = tar.getmembers()
    except _ARCHIVE_ERRORS as err:
        raise DataSourceError(_cut_inside(path, tar, err)) from None
    if problem := _end_problem(path, tar):
        raise DataSourceError(problem)
    shards = []
    for member in members:
        parts = PurePosixPath(member.name).parts
        if member.isfile() and len(parts) >= 3 and parts[-3] == ROOT and parts[-2] in SPLITS:
            if parts[-1].endswith(".tfrecords"):
                opener = functools.partial(tar.extractfile, member)
                shards.append(_Shard(parts[-2], parts[-1].removesuffix(".tfrecords"), opener))
    return shards


_AGAIN = f"download {TAR_NAME} again (or extract what is there and point --src at the folder)"


def _cut_inside(path: Path, tar: tarfile.TarFile, err: Exception) -> str:
    """What listing the tar's members ran into. tarfile raises 'unexpected end of data' when the
    file ends inside the data of the member it listed last."""
    last = tar.members[-1] if tar.members else None
    if last is None:
        return f"{path} is damaged at its start ({err}); {_AGAIN}"
    if isinstance(tar.fileobj, io.BufferedReader):  # uncompressed: offsets are file offsets
        have = path.stat().st_size - last.offset_data
        if 0 <= have < last.size:
            return (
                f"{path} is truncated: it ends {have} of {last.size} bytes into "
                f"{last.name}, so that file and any after it are missing; {_AGAIN}"
            )
    return (
        f"{path} is truncated or damaged in or after {last.name} ({err}): that file and any "
        f"after it may be missing; {_AGAIN}"
    )


def _end_problem(path: Path, tar: tarfile.TarFile) -> str | None:
    """Why the listing may have stopped early, or None. tarfile ends its listing without an
    error at a header that is cut short or fails its checksum, so a truncated tar would read as
    a smaller, complete one. A whole tar ends with an end-of-archive marker (zero blocks) where
    the listing stopped; anything else there is a cut or damaged header."""
    after = f"after {tar.members[-1].name}" if tar.members else "at its start"
    try:
        tar.fileobj.seek(tar.offset)
        block = _read_exact(tar.fileobj, tarfile.BLOCKSIZE)
    except _ARCHIVE_ERRORS as err:
        return (
            f"{path} is truncated or damaged {after} ({err}): files after it are missing; {_AGAIN}"
        )
    if not any(block) and block:
        return None  # the marker, or the first bytes of it
    if not block:
        what = "ends without the end-of-archive marker"
        return (
            f"{path} is truncated: it {what} {after}, so any files after it are missing; {_AGAIN}"
        )
    # A header starts with the member's NUL-terminated name; an extended header (pax, GNU long
    # name) that precedes the real one carries a placeholder there instead.
    raw, extended = block[:100], block[156:157] in _EXTENDED
    named = (b"\0" in raw or len(block) >= 100) and not extended
    name = repr(raw.split(b"\0")[0].decode("utf-8", "replace")) if named else "the next file"
    if len(block) < tarfile.BLOCKSIZE:
        return (
            f"{path} is truncated: it ends {len(block)} bytes into the header of {name} "
            f"{after}, so that file and any after it are missing; {_AGAIN}"
        )
    return (
        f"{path} is damaged or truncated: the header of {name} {after} cannot be read, so "
        f"that file and any after it are missing; {_AGAIN}"
    )


_EXTENDED = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


def _folder_shards(root: Path) -> list[_Shard]:
    return [
        _Shard(split, file.stem, functools.partial(open, file, "rb"))
        for split in SPLITS
        for file in (root / split).glob("*.tfrecords")
    ]


_LAYOUT = (
    f"Expected {TAR_NAME} or a folder with {ROOT}/train/*.tfrecords and {ROOT}/test/*.tfrecords "
    "(the BAIR robot pushing dataset of Ebert et al., CoRL 2017, distributed by Berkeley as "
    f"{TAR_NAME})."
)


def _locate(src: Path, stack: ExitStack) -> list[_Shard]:
    """The shards of the tar, of ``softmotion30_44k/`` or of its parent, sorted."""
    if src.is_dir() and (src / TAR_NAME).is_file():
        src = src / TAR_NAME
    if src.is_file():
        shards = _tar_shards(src, stack)
    elif src.is_dir():
        shards = _folder_shards(src / ROOT if (src / ROOT).is_dir() else src)
    else:
        raise DataSourceError(f"{src} does not exist. {_LAYOUT}")
    missing = [split for split in SPLITS if not any(s.split == split for s in shards)]
    if missing:
        raise DataSourceError(f"no {ROOT}/{'|'.join(missing)}/*.tfrecords in {src}. {_LAYOUT}")
    return sorted(shards, key=_Shard.sort_key)


# --- Conversion ---------------------------------------------------------------------------------


def _convert(shard: _Shard) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The shard's good videos, and (item, reason) for each bad record. A bad data CRC or payload
    skips one record; broken framing (truncation, bad length CRC) ends the file there, as does an
    archive that ends inside the shard."""
    videos, skipped, index = [], [], 0
    with shard.open() as raw, _decompressed(raw) as f:
        end = _end(f)
        while True:
            try:
                data = read_record(f, index, _left(f, end))
                if data is None:
                    break
                videos.append(decode_example(data))
            except RecordError as err:
                if not err.resumable:
                    reason = f"{err.reason}; this and any later records are lost"
                    skipped.append((f"{shard.label} record {index}", reason))
                    break
                skipped.append((f"{shard.label} record {index}", err.reason))
            except ExampleError as err:
                skipped.append((f"{shard.label} record {index}", str(err)))
            except _ARCHIVE_ERRORS as err:  # the tar or the gzip stream ends (or is damaged) here
                reason = (
                    f"the archive cannot be read here ({err}); this and any later records are lost"
                )
                skipped.append((f"{shard.label} record {index}", reason))
                break
            index += 1
    empty = np.zeros((0, *SHAPE), np.uint8)
    return (np.stack(videos) if videos else empty), skipped


def _target(out: Path, shard: _Shard) -> Path:
    """Where a shard read completely and cleanly goes; only these are reused by a rerun."""
    return out / shard.split / f"{shard.stem}.npy"


def _partial(out: Path, shard: _Shard) -> Path:
    """Where the good videos of a shard that lost records go: used for training, but read again
    by every rerun, so a repaired source replaces them."""
    return out / shard.split / f"{shard.stem}.partial.npy"


def _index(out: Path, shards: list[_Shard]) -> dict:
    """index.json over every prepared shard (complete, else partial), counts read from the .npy
    headers (so reused shards are counted without loading them)."""
    splits = {split: [] for split in SPLITS}
    for shard in shards:
        for path in (_target(out, shard), _partial(out, shard)):
            if path.exists():
                videos = int(np.load(path, mmap_mode="r").shape[0])
                splits[shard.split].append({"file": f"{shard.split}/{path.name}", "videos": videos})
                break
    return {"dataset": "bair", "splits": splits}


def _empty_splits(src: Path, index: dict, shards: list[_Shard], skipped) -> str | None:
    """Why a split of the prepared dataset holds no video (the DataModules need both), or None."""
    problems = []
    for split in SPLITS:
        if any(s["videos"] for s in index["splits"][split]):
            continue
        count = sum(s.split == split for s in shards)
        mine = [f"{item}: {why}" for item, why in skipped if item.startswith(f"{split}/")]
        why = "; ".join(mine[:3]) + ("; ..." if len(mine) > 3 else "") or "they hold no record"
        problems.append(f"{split}: none of its {count} shards yields a video ({why})")
    if not problems:
        return None
    return (
        f"a BAIR split would be empty, from {src}: {'; '.join(problems)}. Training needs both "
        "splits, so no index.json was written; repair the damaged files or "
        f"{_AGAIN} and rerun (the complete shards are kept)"
    )


def prepare_bair(src: str | Path, out: str | Path) -> PrepareSummary:
    """Convert the BAIR TFRecords under ``src`` (the tar, ``softmotion30_44k/`` or its parent)
    into ``out/bair``. Resumable: shards whose complete .npy exists (and passes its header
    checks) are reused; a shard that lost records is written as ``<stem>.partial.npy`` and read
    again by a rerun. ``videos`` and ``frames`` count the whole prepared dataset, reused shards
    included. DataSourceError (and no index.json) if a split ends up without any video."""
    out = Path(out) / "bair"
    summary = PrepareSummary("bair", out)
    if google_crc32c.implementation != "c":
        log.warning("google-crc32c has no C extension here: CRC checks will be very slow")
    with ExitStack() as stack:
        shards = _locate(Path(src), stack)
        summary.removed_temporaries = stack.enter_context(output_folder(out, SPLITS))
        with progress_bar("BAIR shards", len(shards)) as advance:
            for shard in shards:
                done, partial = _target(out, shard), _partial(out, shard)
                if reusable_rows(done, SHAPE, summary) is not None:
                    # A leftover of a run stopped between writing the two.
                    partial.unlink(missing_ok=True)
                    summary.reused += 1
                    advance(0)
                    continue
                videos, skipped = _convert(shard)
                if not skipped:
                    save_npy(done, videos)
                    partial.unlink(missing_ok=True)
                elif len(videos):
                    save_npy(partial, videos)
                else:
                    partial.unlink(missing_ok=True)
                summary.skipped += skipped
                advance(len(videos) * FRAMES)
        index = _index(out, shards)
        if problem := _empty_splits(Path(src), index, shards, summary.skipped):
            remove_stale_index(out / "index.json")
            raise DataSourceError(problem)
        write_json(out / "index.json", index, indent=1)
    summary.videos = sum(s["videos"] for shards in index["splits"].values() for s in shards)
    summary.frames = summary.videos * FRAMES
    return summary
