"""Writers for raw dataset fixtures in the official formats, shared by tests and benchmarks.

KTH: MJPEG AVI files named ``personXX_<class>_dY_uncomp.avi``, loose or in ``<class>.zip``, and
the damage found in the wild: AVIs cut between frames, zip members flagged encrypted or stored
with a compression method Python cannot read.
BAIR: ``tf.train.Example`` records (serialized by the protobuf runtime from the schema built below
in a private descriptor pool), framed as TFRecords with CRCs computed here, independently of the
code under test, and the ``bair_robot_pushing_dataset_v0.tar`` holding them.
"""

from __future__ import annotations

import struct
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import av
import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# --- KTH ----------------------------------------------------------------------------------------


def write_avi(path: Path, frames: np.ndarray) -> None:
    """MJPEG in AVI at the best quality; R = G = B like KTH's gray content in a colour codec."""
    with av.open(str(path), "w", format="avi") as c:
        s = c.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt = 160, 120, "yuvj420p"
        s.codec_context.qmin = s.codec_context.qmax = 1
        for f in frames:
            rgb = np.repeat(f[..., None], 3, axis=2)
            c.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        c.mux(s.encode())


def write_zip(path: Path, files: Iterable[tuple[Path, str]]) -> None:
    """A deflated zip at ``path`` holding each (file on disk, name in the archive), in order."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file, arcname in files:
            zf.write(file, arcname)


def avi_frame_offsets(data: bytes) -> list[int]:
    """Where each frame's chunk starts in an AVI: the chunks of its ``movi`` list, in order."""
    pos = data.index(b"movi") + 4
    offsets = []
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"idx1":
            break
        offsets.append(pos)
        pos += 8 + size + size % 2
    return offsets


def cut_avi(data: bytes, keep: int) -> bytes:
    """The AVI cut right before frame ``keep``: the frames before it all decode, the index and
    the later frames are gone, as in an interrupted copy."""
    return data[: avi_frame_offsets(data)[keep]]


def write_stored_zip(
    path: Path, members: Iterable[tuple[str, bytes]], encrypted=(), method: dict | None = None
) -> None:
    """A zip of stored members, then patched like the archives of other tools: the members named
    in ``encrypted`` get the encryption flag (bit 0 of the flags) and those in ``method`` the
    given compression method number, in both their local and central directory headers."""
    method = method or {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        infos, central = zf.infolist(), zf.start_dir
    central_offsets = {}
    pos = central
    while data[pos : pos + 4] == b"PK\x01\x02":
        n, extra, comment = struct.unpack("<HHH", data[pos + 28 : pos + 34])
        central_offsets[data[pos + 46 : pos + 46 + n].decode()] = pos
        pos += 46 + n + extra + comment
    for info in infos:
        # flags at +6 and method at +8 in a local header, +8 and +10 in a central one
        for at, flags in ((info.header_offset, 6), (central_offsets[info.filename], 8)):
            if info.filename in encrypted:
                data[at + flags] |= 0x01
            if info.filename in method:
                data[at + flags + 2 : at + flags + 4] = struct.pack("<H", method[info.filename])
    path.write_bytes(bytes(data))


def write_kth_videos(
    src: Path, staging: Path, videos: Iterable[tuple[str, np.ndarray, str]]
) -> None:
    """Each (name like ``person01_boxing_d1``, (T, 120, 160) uint8 frames, where) as
    ``<name>_uncomp.avi``: where ``"avi"`` puts it in ``src/extracted/``, ``"zip"`` writes it to
    ``staging`` and stores it in ``src/<class>.zip`` (one archive per class, like the official)."""
    members: dict[str, list[tuple[Path, str]]] = {}
    for name, frames, where in videos:
        file = f"{name}_uncomp.avi"
        if where == "avi":
            (src / "extracted").mkdir(exist_ok=True)
            write_avi(src / "extracted" / file, frames)
            continue
        write_avi(staging / file, frames)
        members.setdefault(name.split("_")[1], []).append((staging / file, file))
    for action, files in members.items():
        write_zip(src / f"{action}.zip", files)


# --- BAIR ---------------------------------------------------------------------------------------


def _example_class():
    """tf.train.Example as in tensorflow/core/example/{example,feature}.proto."""
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="test_bair_example.proto", package="tensorflow", syntax="proto3"
    )

    def field(msg, name, number, kind, repeated=False, type_name=""):
        label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
        new = msg.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            new.type_name = type_name
        return new

    for name, kind in (("BytesList", F.TYPE_BYTES), ("FloatList", F.TYPE_FLOAT)):
        field(proto.message_type.add(name=name), "value", 1, kind, repeated=True)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in ((1, "bytes_list"), (2, "float_list")):
        type_name = ".tensorflow." + name.title().replace("_", "")
        field(feature, name, number, F.TYPE_MESSAGE, type_name=type_name).oneof_index = 0
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    field(entry, "key", 1, F.TYPE_STRING)
    field(entry, "value", 2, F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    field(features, "feature", 1, F.TYPE_MESSAGE, True, ".tensorflow.Features.FeatureEntry")
    example = proto.message_type.add(name="Example")
    field(example, "features", 1, F.TYPE_MESSAGE, type_name=".tensorflow.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _example_class()


def serialize(video, rng, frame_bytes=None):
    """One BAIR record; ``frame_bytes`` overrides frame 7's raw bytes."""
    ex = Example()
    for i, frame in enumerate(video):
        feats = ex.features.feature
        raw = frame_bytes if (frame_bytes is not None and i == 7) else frame.tobytes()
        feats[f"{i}/image_aux1/encoded"].bytes_list.value.append(raw)
        feats[f"{i}/action"].float_list.value.extend(rng.standard_normal(4).tolist())
        feats[f"{i}/endeffector_pos"].float_list.value.extend(rng.standard_normal(3).tolist())
    return ex.SerializeToString()


def mask(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32


def frame_record(data):
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", mask(google_crc32c.value(length)))
        + data
        + struct.pack("<I", mask(google_crc32c.value(data)))
    )


def write_raw(tmp_path, rng, shards):
    """``softmotion30_44k/`` under tmp_path/raw, one file per (split, stem, videos) of ``shards``
    holding random videos; returns {(split, stem): (videos, [record bytes])}."""
    written = {}
    for split, stem, n in shards:
        videos = rng.integers(0, 256, (n, 30, 64, 64, 3), dtype=np.uint8)
        records = [frame_record(serialize(v, rng)) for v in videos]
        path = tmp_path / "raw" / "softmotion30_44k" / split / f"{stem}.tfrecords"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(records))
        written[split, stem] = videos, records
    return written


def make_tar(tmp_path, format=tarfile.DEFAULT_FORMAT):
    """tmp_path/raw/softmotion30_44k -> tmp_path/bair_robot_pushing_dataset_v0.tar; ``format``
    as tarfile names them (pax by default, which adds an extended header before each member's
    own; GNU tar's format has none for short names)."""
    tar_path = tmp_path / "bair_robot_pushing_dataset_v0.tar"
    with tarfile.open(tar_path, "w", format=format) as tar:
        tar.add(tmp_path / "raw" / "softmotion30_44k", arcname="softmotion30_44k")
    return tar_path


# --- Your own videos ----------------------------------------------------------------------------


def bouncing_square(frames: int, size: int, seed: int, colour=(255, 64, 32)) -> np.ndarray:
    """uint8 (frames, size, size, 3): a square that moves and bounces off the borders."""
    rng = np.random.default_rng(seed)
    side = size // 4
    pos, vel = rng.uniform(0, size - side, 2), rng.uniform(-3, 3, 2)
    out = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        y, x = pos.astype(int)
        out[t, y : y + side, x : x + side] = colour
        pos += vel
        for i in range(2):
            if not 0 <= pos[i] <= size - side:
                vel[i] = -vel[i]
                pos[i] = np.clip(pos[i], 0, size - side)
    return out


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> None:
    """uint8 (T, H, W, 3) RGB or (T, H, W) grey -> H.264 (else MPEG-4) in MP4."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            fmt = "rgb24" if f.ndim == 3 else "gray"
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format=fmt)))
        c.mux(s.encode())
