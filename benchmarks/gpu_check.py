"""GPU check: training and best-of-100 throughput of the paper nets, written to a JSON file.

Training: smmnist_lp (DCGAN-64, T = 5 + 10) and bair_lp (VGG-64, T = 2 + 10) at batch 100 in
precision 32 / bf16-mixed / 16-mixed (autocast; the loss stays float32; 16-mixed with a
GradScaler, as Lightning does), each with and without ``torch.compile`` (``SVG.fast_paths``),
per-step BatchNorm; whether every loss stayed finite; peak memory. With two GPUs, the 32-bit
smmnist_lp step under DDP (batch 100 per GPU). Evaluation: best-of-100 SSIM/PSNR scoring of
the smmnist_lp net, predicted frames/s, and whether the rollout ran with no host sync
(``torch.cuda.set_sync_debug_mode("error")``).

    python -m benchmarks.gpu_check --out gpu_check.json           # on a GPU, < 8 minutes
    python -m benchmarks.gpu_check --device cpu --tiny --out x.json  # dry run of the same code
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path

import torch

from svg_lightning.files import write_json
from svg_lightning.metrics.frame import psnr, ssim
from svg_lightning.models.config import SVGConfig
from svg_lightning.models.svg import SVG

NETS = {  # spec Sec. 2: (architecture, n_past, n_future)
    "smmnist_lp": (dict(), 5, 10),
    "bair_lp": (dict(backbone="vgg64", channels=3, z_dim=64), 2, 10),
}
TINY = dict(g_dim=8, z_dim=3, rnn_size=8, nf=4, backbone="dcgan32", image_size=32)
DTYPES = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(arch: dict, tiny: bool, device, compile: bool, channels_last: bool) -> SVG:
    torch.manual_seed(0)
    arch = arch | TINY if tiny else arch
    return SVG(SVGConfig(**arch)).to(device).fast_paths(compile, channels_last)


def train_figures(name, precision, compile, args, device) -> dict:
    arch, n_past, n_future = NETS[name]
    model = build(arch, args.tiny, device, compile, args.channels_last)
    cfg = model.config
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    dtype = DTYPES[precision]
    t = n_past + n_future
    x = torch.rand(args.batch, t, cfg.channels, cfg.image_size, cfg.image_size, device=device)
    losses = []

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            terms = model(x, n_past, "per_step").loss(x, 1e-4)
        opt.zero_grad(set_to_none=True)
        scaler.scale(terms.loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(terms.loss.detach())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    s = (time.perf_counter() - start) / args.steps
    return {
        "net": name, "precision": precision, "compile": compile, "batch": args.batch,
        "step_ms": 1e3 * s, "frames_per_s": args.batch * t / s, "warmup_s": warm,
        "loss_finite": bool(torch.stack(losses).isfinite().all()),
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda" else None,
    }  # fmt: skip


def _ddp_worker(rank: int, world: int, args, port: int, queue) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = args.device == "cuda"  # a CPU dry run uses gloo and one process per rank
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    arch, n_past, n_future = NETS["smmnist_lp"]
    model = build(arch, args.tiny, device, False, args.channels_last)
    cfg, t = model.config, n_past + n_future
    ddp = DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=2e-3)
    x = torch.rand(args.batch, t, cfg.channels, cfg.image_size, cfg.image_size, device=device)
    times, losses = [], []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = ddp(x, n_past, "per_step").loss(x, 1e-4).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
        losses.append(loss.detach())
    if rank == 0:
        s = sum(times) / len(times)
        queue.put({
            "processes": world, "step_ms": 1e3 * s, "frames_per_s": world * args.batch * t / s,
            "loss_finite": bool(torch.isfinite(torch.stack(losses)).all()),
        })  # fmt: skip
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_figures(args) -> dict:
    """The 32-bit smmnist_lp step under DDP, two processes (two GPUs, or gloo on a CPU)."""
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.SimpleQueue()
    torch.multiprocessing.spawn(_ddp_worker, (2, args, free_port(), queue), nprocs=2)
    return queue.get()


def eval_figures(precision: str, args, device) -> dict:
    model = build({}, args.tiny, device, False, args.channels_last).eval()
    cfg, s, f = model.config, args.samples, 10
    x = torch.rand(args.videos, 5 + f, cfg.channels, cfg.image_size, cfg.image_size, device=device)
    cond, target = x[:, :5], x[:, 5:]
    noise = torch.randn(args.videos, s, model.noise_steps(5, f), cfg.z_dim, device=device)
    dtype = DTYPES[precision]

    def run(chunk=None):
        best = torch.full((2, args.videos), -float("inf"), device=device)
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            for c in model.iter_samples(cond, f, s, chunk, noise):
                pred, truth = c.frames.float(), target[c.rows // s]
                v = c.rows // s
                best[0].scatter_reduce_(0, v, ssim(pred, truth).mean(-1), "amax")
                best[1].scatter_reduce_(0, v, psnr(pred, truth).mean(-1), "amax")
        return best

    run()
    sync(device)
    start = time.perf_counter()
    run(args.chunk)
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "precision": precision, "videos": args.videos, "samples": s, "n_future": f,
        "seconds": seconds, "frames_per_s": args.videos * s * f / seconds,
        "rollout_without_host_sync": without_host_sync(model, cond, f, s, noise, device),
    }  # fmt: skip


def without_host_sync(model: SVG, cond, n_future: int, samples: int, noise, device) -> bool | None:
    """One sampling pass with CUDA's synchronising operations made errors: True if none ran
    (the rollout can be captured as a CUDA graph). On a CPU the same pass runs unguarded
    (dry run) and the answer is None."""
    guard = device.type == "cuda"
    if guard:
        torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in model.iter_samples(cond, n_future, samples, None, noise):
            pass
        return True if guard else None
    except RuntimeError as err:
        if not guard or "synchroniz" not in str(err):
            raise
        return False
    finally:
        if guard:
            torch.cuda.set_sync_debug_mode("default")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny nets and batches (dry run)")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=None, help="rows per sampling call")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--budget", type=float, default=420.0,
        help="seconds; figures not started by then are listed as skipped (gpu_check.sh stops "
        "the process at 480 s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.warmup, args.batch, args.videos, args.samples = 2, 1, 4, 2, 4
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "tiny": args.tiny, "channels_last": args.channels_last,
        # PyTorch's defaults, as training with this package gets them: TF32 for convolutions,
        # not for matmuls (precision "32" figures).
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32,
                 "cudnn": torch.backends.cudnn.allow_tf32},
        "train": [], "eval": [], "ddp": None, "skipped": [],
    }  # fmt: skip
    # No float16 autocast worth timing on a CPU.
    precisions = [p for p in DTYPES if device.type == "cuda" or p != "16-mixed"]

    def train(compile: bool) -> list:
        return [
            (("train", name, precision, compile),
             lambda n=name, p=precision: train_figures(n, p, compile, args, device))
            for name in NETS for precision in precisions
        ]  # fmt: skip

    # The figures users wait for first (training without compile, best of 100); compiling
    # every configuration can take minutes, so it comes after them.
    jobs = train(False)
    jobs += [(("eval", p), lambda p=p: eval_figures(p, args, device)) for p in ("32", "bf16-mixed")]
    if not args.no_compile:
        jobs += train(True)
    if device.type == "cuda" and torch.cuda.device_count() >= 2:
        jobs.append((("ddp",), lambda: ddp_figures(args)))
    start = time.perf_counter()
    for key, job in jobs:
        if time.perf_counter() - start > args.budget:
            report["skipped"].append(list(key))
        else:
            # One failed figure (out of memory, a compile error) must not cost the others.
            try:
                fig = job()
            except Exception as err:
                fig = {"figure": list(key), "error": f"{type(err).__name__}: {err}"[:2000]}
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if key[0] == "ddp":
                report["ddp"] = fig
            else:
                report[key[0]].append(fig)
            print(json.dumps(fig), flush=True)
        write_json(Path(args.out), report, indent=1)  # each time: a stopped run keeps its figures
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
