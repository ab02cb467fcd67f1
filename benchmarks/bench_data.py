"""Data pipeline throughput: raw-dataset preparation and DataModule loading, KTH and BAIR.

Everything runs in one process on fixtures generated into a temporary directory (removed at the
end), with the writers of ``tests/helpers/fixtures.py``:

* KTH: ``--kth-videos`` MJPEG AVIs of 160x120 gray frames (a textured background and a moving
  box, ``--kth-frames`` each), named ``personXX_<class>_dY_uncomp.avi`` with persons from both
  splits; the boxing, handclapping and handwaving videos are stored in ``<class>.zip``, the rest
  as loose files. Measured: ``prepare_kth(src, out, size=64)``.
* BAIR: ``bair_robot_pushing_dataset_v0.tar`` holding ``softmotion30_44k/{train,test}/
  traj_<a>_to_<b>.tfrecords`` shards of ``--bair-shard`` 30-frame random-pixel Examples
  (``--bair-train`` and ``--bair-test`` of them). Measured: ``prepare_bair(tar, out)``.

Preparation throughput is prepared frames per second of wall time for the whole call (decoding,
resizing, CRC checks, writing the .npy files; the progress bar is rendered to a discarded buffer).

DataModule throughput: ``KTHDataModule`` (n_past 10, n_future 10) and ``BAIRDataModule`` (2 / 10)
over the prepared output, batch size 16, for each ``--workers`` count: one warm-up batch (which
includes starting the workers), then ``--batches`` batches of ``train_dataloader()`` timed;
frames/s counts every frame of every clip delivered to the main process, and is also given per
worker (the main process when num_workers=0). The reference is the raw cost of the same number of
frames read in a tight loop from the same prepared files opened with ``np.load(mmap_mode='r')``:
the same clips' lengths at pre-drawn random positions, copied out of the map with ``np.array``
(uint8, no tensor conversion, no batching), the median of ``--reps`` runs. ``vs mmap`` is the
DataModule's frames/s over the reference's. The files were just written, so both read from the
page cache, not from disk.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from svg_lightning.data.clips import Memmaps
from svg_lightning.data.datamodules import BAIRDataModule, KTHDataModule
from svg_lightning.data.sources.bair import prepare_bair
from svg_lightning.data.sources.kth import CLASSES, prepare_kth
from tests.helpers.fixtures import make_tar, write_kth_videos, write_raw

ZIPPED = ("boxing", "handclapping", "handwaving")
# Persons 1-20 train and 21-25 test; cycled so that both splits get videos of every class.
PERSONS = (1, 21, 2, 22, 3, 23, 4, 24, 5, 25, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)


def kth_frames(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 120, 160) uint8: a smooth noisy background drifting by a pixel a frame, a bright box
    moving across it, and fresh sensor noise per frame (so the codec cannot skip content)."""
    background = rng.integers(40, 160, (120 // 4, 320 // 4), dtype=np.uint8)
    background = np.kron(background, np.ones((4, 4), np.uint8))
    out = np.empty((n, 120, 160), np.uint8)
    for t in range(n):
        shift = t % 160
        frame = background[:, shift : shift + 160].astype(np.int16)
        y, x = 20 + (3 * t) % 60, (5 * t) % 110
        frame[y : y + 40, x : x + 50] = 220
        frame += rng.integers(-6, 7, frame.shape, dtype=np.int16)
        out[t] = np.clip(frame, 0, 255)
    return out


def make_kth(root: Path, videos: int, frames: int) -> Path:
    src, staging = root / "kth_src", root / "kth_staging"
    src.mkdir()
    staging.mkdir()
    rng = np.random.default_rng(0)
    specs = []
    for i in range(videos):
        person = PERSONS[i % len(PERSONS)]
        action = CLASSES[i % len(CLASSES)]
        scenario = 1 + (i // len(CLASSES)) % 4
        name = f"person{person:02d}_{action}_d{scenario}"
        specs.append((name, kth_frames(rng, frames), "zip" if action in ZIPPED else "avi"))
    names = [name for name, _, _ in specs]
    assert len(set(names)) == len(names), "duplicate KTH video names"
    write_kth_videos(src, staging, specs)
    shutil.rmtree(staging)
    return src


def make_bair(root: Path, train: int, test: int, shard: int) -> Path:
    rng = np.random.default_rng(0)
    for split, total in (("train", train), ("test", test)):
        for a in range(0, total, shard):
            n = min(shard, total - a)
            write_raw(root, rng, [(split, f"traj_{a}_to_{a + n - 1}", n)])  # one shard at a time
    tar = make_tar(root)
    shutil.rmtree(root / "raw")
    return tar


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def quietly(fn):
    """Run ``fn`` with the rich progress bar drawn into a buffer that is thrown away."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn()


def loader_rate(dm, batches: int) -> tuple[int, float]:
    """(frames delivered, seconds) for ``batches`` training batches after one warm-up batch."""
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    next(it)
    frames = 0
    start = time.perf_counter()
    for _ in range(batches):
        frames += next(it)["frames"].shape[:2].numel()
    seconds = time.perf_counter() - start
    del it  # stops persistent workers
    return frames, seconds


def mmap_rate(dm, clips: int) -> tuple[int, float]:
    """(frames, seconds) copying ``clips`` clips of dm.seq_len frames out of the .npy memory maps
    of its training videos (opened, and positions drawn, before timing)."""
    videos, seq_len = dm.train_set.videos, dm.seq_len
    maps = Memmaps(dm.root)
    arrays = [maps[file] if row is None else maps[file][row] for file, row, _ in videos]
    rng = np.random.default_rng(0)
    picks = rng.integers(len(arrays), size=clips)
    starts = [int(rng.integers(videos[v][2] - seq_len + 1)) for v in picks]
    chosen = [arrays[v] for v in picks]
    frames = 0
    start = time.perf_counter()
    for array, s in zip(chosen, starts):
        frames += len(np.array(array[s : s + seq_len]))
    return frames, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kth-videos", type=int, default=40)
    parser.add_argument("--kth-frames", type=int, default=100)
    parser.add_argument("--bair-train", type=int, default=768)
    parser.add_argument("--bair-test", type=int, default=256)
    parser.add_argument("--bair-shard", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--reps", type=int, default=5, help="runs of the mmap reference")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()

    rows = []  # (dataset, what, frames, seconds, workers or None, reference frames/s or None)
    tmp = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        kth_src, kth_gen = timed(lambda: make_kth(tmp, args.kth_videos, args.kth_frames))
        zipped = sum(1 for _ in kth_src.glob("*.zip"))
        summary, seconds = timed(lambda: quietly(lambda: prepare_kth(kth_src, tmp / "out", 64)))
        assert summary.videos == args.kth_videos and not summary.skipped, summary.lines()
        what = f"prepare_kth: {summary.videos} AVIs ({zipped} zips), 64x64"
        rows.append(("KTH", what, summary.frames, seconds, None, None))

        tar, bair_gen = timed(
            lambda: make_bair(tmp / "bair_src", args.bair_train, args.bair_test, args.bair_shard)
        )
        summary, seconds = timed(lambda: quietly(lambda: prepare_bair(tar, tmp / "out")))
        assert summary.videos == args.bair_train + args.bair_test and not summary.skipped
        what = f"prepare_bair: tar, {summary.videos} examples"
        rows.append(("BAIR", what, summary.frames, seconds, None, None))

        loaders = (("KTH", KTHDataModule, 10, 10), ("BAIR", BAIRDataModule, 2, 10))
        for name, cls, n_past, n_future in loaders:
            clips = args.batches * args.batch_size
            dm = cls(
                data_dir=str(tmp / "out"),
                n_past=n_past,
                n_future=n_future,
                batch_size=args.batch_size,
                num_workers=0,
                train_length=clips,
            )
            dm.setup("fit")
            mmap_rate(dm, args.batch_size)  # warm-up
            runs = sorted((mmap_rate(dm, clips) for _ in range(args.reps)), key=lambda r: r[1])
            frames, seconds = runs[len(runs) // 2]  # the median run: each is short
            reference = frames / seconds
            what = f"np.load mmap copy, {n_past + n_future}-frame clips (reference)"
            rows.append((name, what, frames, seconds, None, None))
            for workers in args.workers:
                dm = cls(
                    data_dir=str(tmp / "out"),
                    n_past=n_past,
                    n_future=n_future,
                    batch_size=args.batch_size,
                    num_workers=workers,
                    train_length=(args.batches + 1) * args.batch_size,
                )
                frames, seconds = loader_rate(dm, args.batches)
                what = f"DataModule n_past={n_past} n_future={n_future} workers={workers}"
                rows.append((name, what, frames, seconds, workers, reference))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"fixtures: KTH {args.kth_videos} x {args.kth_frames} frames generated in {kth_gen:.1f} s, "
        f"BAIR tar of {args.bair_train}+{args.bair_test} examples in {bair_gen:.1f} s; "
        f"DataModule: batch {args.batch_size}, {args.batches} timed batches after 1 warm-up"
    )
    header = f"{'data':<5} {'measured':<56} {'frames':>7} {'s':>6} {'frames/s':>9} "
    header += f"{'/worker':>9} {'vs mmap':>8}"
    print(header)
    print("-" * len(header))
    for name, what, frames, seconds, workers, reference in rows:
        rate = frames / seconds
        per_worker = f"{rate / max(workers, 1):9.0f}" if workers is not None else f"{'':9}"
        ratio = f"{rate / reference:8.3f}" if reference else f"{'':8}"
        print(f"{name:<5} {what:<56} {frames:7d} {seconds:6.2f} {rate:9.0f} {per_worker} {ratio}")


if __name__ == "__main__":
    main()
