"""How the CLIP loss scales with batch size: the B×B similarity matrix makes it quadratic.

Times forward + backward of ``simpleclip.loss.clip_loss`` and measures memory for batch sizes
32 … 4096 on CPU and, when present, CUDA; prints one JSON line per (device, batch size) and
saves a log-log plot. Companion to ``notebooks/05_contrastive_loss.ipynb``.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the inputs. On CPU, the analytic size
of one fp32 B×B logits matrix (``logits_mb``) and the measured rise of the resident set size to
its peak during the step (``memory_mb``; Linux only, else null). Page-granular and including
allocator overhead, it is a measurement to compare with the analytic B×B size, not an exact count.

    python benchmarks/loss_scaling.py                # full sweep, plot in benchmarks/results/
    python benchmarks/loss_scaling.py --smoke        # two small sizes, one repeat (CI)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from simpleclip.loss import clip_loss, init_logit_scale

FULL_BATCH_SIZES = [32 * 2**i for i in range(8)]  # 32, 64, …, 4096
SMOKE_BATCH_SIZES = [32, 64]
DEFAULT_PLOT = Path(__file__).resolve().parent / "results" / "loss_scaling.png"


def rss_mb(field: str = "VmRSS") -> float | None:
    """Resident memory now (``VmRSS``) or at its peak (``VmHWM``), from /proc; Linux only."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    except OSError:
        pass
    return None


def restart_peak_rss() -> float | None:
    """Return freed heap to the OS, reset the peak-RSS counter, and give the RSS now (MiB)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # memory freed but kept would hide the rise
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
    except OSError:
        return None
    return rss_mb()


def random_embeds(batch_size: int, embed_dim: int, device: str) -> torch.Tensor:
    """Unit-norm leaf embeddings that want a gradient, like a model's normalised outputs."""
    embeds = F.normalize(torch.randn(batch_size, embed_dim), dim=-1).to(device)
    return embeds.requires_grad_()


def time_loss(batch_size: int, embed_dim: int, device: str, repeats: int) -> dict:
    """Median forward + backward time of the loss, and its memory, for one batch size."""
    image = random_embeds(batch_size, embed_dim, device)
    text = random_embeds(batch_size, embed_dim, device)
    logit_scale = init_logit_scale().to(device)

    def step() -> None:
        clip_loss(image, text, logit_scale).backward()  # (B, E), (B, E) -> (B, B) -> ()
        image.grad = text.grad = None

    rss_before = restart_peak_rss() if device == "cpu" else None  # the warm-up's peak counts
    step()  # warm-up: kernels, allocator caches
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)

    if device == "cuda":
        memory_mb, memory_kind = (torch.cuda.max_memory_allocated() - base) / 2**20, "cuda_peak"
    else:
        peak = rss_mb("VmHWM")
        memory_mb = peak - rss_before if rss_before is not None and peak is not None else None
        memory_kind = "cpu_peak_rss_rise"
    return {
        "device": device,
        "batch_size": batch_size,
        "embed_dim": embed_dim,
        "ms": statistics.median(times),
        "ms_min": min(times),
        "repeats": repeats,
        "logits_mb": batch_size * batch_size * 4 / 2**20,  # one fp32 B×B matrix
        "memory_mb": memory_mb,
        "memory_kind": memory_kind,
        "threads": torch.get_num_threads(),
    }


def plot(rows: list[dict], path: Path) -> None:
    """Log-log time and memory against batch size, with a B² guide line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(10, 4))
    for device in sorted({r["device"] for r in rows}):
        own = [r for r in rows if r["device"] == device]
        sizes = [r["batch_size"] for r in own]
        ax_time.plot(sizes, [r["ms"] for r in own], "o-", label=f"{device}: forward + backward")
        measured = [r for r in own if r["memory_mb"]]
        if measured:
            ax_mem.plot(
                [r["batch_size"] for r in measured],
                [r["memory_mb"] for r in measured],
                "o-",
                label=f"{device}: {own[0]['memory_kind']}",
            )
    sizes = sorted({r["batch_size"] for r in rows})
    logits_mb = [b * b * 4 / 2**20 for b in sizes]
    ax_mem.plot(sizes, logits_mb, "k--", label="one fp32 B×B matrix (∝ B²)")
    slowest = max(r["ms"] for r in rows if r["batch_size"] == sizes[-1])
    ax_time.plot(sizes, [slowest * (b / sizes[-1]) ** 2 for b in sizes], "k:", label="∝ B²")
    for ax, ylabel in ((ax_time, "time per step (ms)"), (ax_mem, "memory (MiB)")):
        ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel=ylabel)
        ax.legend(fontsize=8)
    ax_time.set_title(f"CLIP loss, embed dim {rows[0]['embed_dim']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two small sizes, one repeat")
    parser.add_argument("--embed-dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps; the median is kept")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # 1 gives steadier CPU timings on a shared machine

    batch_sizes = args.batch_sizes or (SMOKE_BATCH_SIZES if args.smoke else FULL_BATCH_SIZES)
    repeats = 1 if args.smoke else args.repeats
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        time_loss(batch_sizes[0], args.embed_dim, device, repeats=1)  # one-off start-up costs
        for batch_size in batch_sizes:
            rows.append(time_loss(batch_size, args.embed_dim, device, repeats))
            print(json.dumps(rows[-1]), flush=True)
    plot(rows, args.plot)
    return rows


if __name__ == "__main__":
    main()
