"""The benchmark protocols B1, B2 and B3 of BENCHMARKS.md, JSON lines on stdout.

    python benchmarks/bench.py throughput [--variants all] [--batch-size 128] [--width 1.0]
    python benchmarks/bench.py b2 --cifar DIR [--epochs 10] [--section.key value ...]
    python benchmarks/bench.py b3 --cifar DIR [--epochs 200] [--section.key value ...]

B1 (throughput): 
One full BYOL step from a uint8 batch in memory to updated weights (augment both views,
online forward and backward on both, target forward, symmetric loss, optimiser step, EMA
update) on resnet18-cifar with the paper's heads. Each variant runs in its own process so
that its peak memory (CPU RSS, or GPU max allocated) is its own. One JSON object per
variant, with the settings that produced it.

So that speed compares across machines, each variant also measures the machine's matrix-
multiply rate in the precision it runs (a 2048 x 2048 x 2048 product, median of repeats, on
the same threads), counts the floating-point operations of one step (PyTorch's
FlopCounterMode: convolutions and matrix products, 2 per multiply-add) and reports the step's
share of that rate: `share_of_matmul_rate` = (step GFLOP / step seconds) / matmul GFLOP/s.
The CPU kind (AVX-512 BF16 or AVX2, from torch's CPU capability) is in every object.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from byol.data.listing import DataError

# name -> (channels_last, precision, concat_views)
VARIANTS = {
    "default": (True, "auto", False),
    "fp32": (False, "32", False),
    "fp32_channels_last": (True, "32", False),
    "bf16": (False, "bf16", False),
    "concat_views": (True, "auto", True),
}


def emit(row: dict, out: str | None) -> None:
    """A result row: printed, and appended to the JSONL file `out` where one is named."""
    print(json.dumps(row), flush=True)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


@functools.lru_cache(maxsize=None)
def commit() -> str:
    """The commit checked out when the run began (asked once: every row of a run names the same)."""
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_variant(variant: str, batch_size: int, width: float, steps: int, warmup: int, device: str) -> dict:
    from byol.core.augment import AugmentConfig, BatchAugment
    from byol.core.backbones import resnet18
    from byol.core.model import BYOL
    from byol.core.optim import build_optimizer, scaled_lr
    from byol.training.facts import read_hardware
    from byol.training.plan import choose_precision

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    channels_last, precision, concat = VARIANTS[variant]
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    precision = choose_precision(precision, dev.type == "cuda", read_hardware())[0]
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    torch.manual_seed(0)
    model = BYOL(resnet18(stem="cifar", width=width), image_size=32, concat_views=concat).to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    augment = BatchAugment(AugmentConfig(size=32), channels_last=channels_last)
    opt = build_optimizer(model.trainable_modules(), "lars",
                          scaled_lr(1.0, batch_size), 1e-5)
    images = torch.randint(0, 256, (batch_size, 3, 32, 32), dtype=torch.uint8, device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def step(k: int):
        v1, v2 = augment(images)
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(v1, v2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.update_target(k, 1000)
        return loss

    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(0)
    step_flop = counter.get_total_flops()
    times = []
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        loss = step(k)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        else:
            loss.item()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    rate = matmul_gflops(dev, dtype or torch.float32)
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "benchmark": "B1", "variant": variant, "backbone": f"resnet18-cifar@{width:g}", "batch": batch_size,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "cpu_kind": cpu_kind(), "precision": precision, "channels_last": channels_last, "concat_views": concat,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "commit": commit(),
        "steps_timed": steps, "warmup": warmup,
        "images_per_sec": round(batch_size / sec, 2), "ms_per_step": round(1000 * sec, 1),
        "ms_per_step_all": [round(1000 * t, 1) for t in times],
        "step_gflop": round(step_flop / 1e9, 2), "achieved_gflops": round(step_flop / sec / 1e9, 1),
        "matmul_gflops": round(rate, 1), "share_of_matmul_rate": round(step_flop / sec / 1e9 / rate, 3),
        "peak_memory_mb": round(peak / 2**20, 1),
        "peak_memory_kind": "gpu_max_allocated" if dev.type == "cuda" else "cpu_max_rss",
    }


def cpu_kind() -> str:
    """'AVX-512 BF16' where this CPU multiplies bf16 in hardware (or AMX), else its vector
    capability as torch reports it (e.g. 'AVX2')."""
    from byol.training.facts import cpu_bf16_hardware

    return "AVX-512 BF16" if cpu_bf16_hardware() else torch.backends.cpu.get_cpu_capability().replace("AVX512", "AVX-512")


def matmul_gflops(device, dtype, n: int = 2048, repeats: int = 7) -> float:
    """The machine's matrix-multiply rate in `dtype`: GFLOP/s of an n x n x n product (2 n^3
    operations), the median of `repeats` timings after one warm-up."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = []
    for k in range(repeats + 1):
        t0 = time.perf_counter()
        c = a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        else:
            c[0, 0].item()
        if k:
            times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def throughput(batch_size=128, width=1.0, steps=5, warmup=2, variants="default", device="auto", repeats=1):
    """Run each variant (comma-separated) `repeats` times, each time in a fresh process."""
    names = [v.strip() for v in variants.split(",") if v.strip()]
    if names == ["all"]:
        names = list(VARIANTS)
    for rep in range(repeats):
        for name in names:
            if name not in VARIANTS:
                raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)} or all")
            cmd = [sys.executable, os.path.abspath(__file__), "variant", name, str(batch_size), str(width),
                   str(steps), str(warmup), device]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                yield {"benchmark": "B1", "variant": name, "error": proc.stderr.strip().splitlines()[-1:]}
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["repeat"] = rep
            yield result


def default_cifar_dir() -> str:
    """The folder named by BYOL_CIFAR10_DIR (train.tar.gz and test.tar.gz), when --cifar is not given."""
    path = os.environ.get("BYOL_CIFAR10_DIR")
    if not path:
        raise DataError("this benchmark needs CIFAR-10 as train.tar.gz and test.tar.gz: pass --cifar DIR "
                        "or set BYOL_CIFAR10_DIR")
    return path


def b2(epochs: int = 10, cifar_dir: str | None = None, out_dir: str = "runs/bench-b2",
       overrides: list[str] | None = None) -> dict:
    """B2: resnet18-cifar width 0.25 on the first 1,000 training images of each class, batch 256,
    the recommended CIFAR settings (configs/cifar10.yaml); kNN before and after, wall time."""
    import shutil

    from byol.config import load_config
    from byol.training.pretrain import pretrain

    cifar_dir = cifar_dir or default_cifar_dir()
    train, test = os.path.join(cifar_dir, "train.tar.gz"), os.path.join(cifar_dir, "test.tar.gz")
    for f in (train, test):
        if not os.path.exists(f):
            raise DataError(f"B2 needs the CIFAR-10 copy: {f} not found (--cifar DIR)")
    config = "cifar10"  # the packaged recipe
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = load_config(config, [
        "--data.path", train, "--data.val_path", test, "--data.limit_per_class", "1000",
        "--model.backbone_args", "{stem: cifar, width: 0.25}", "--train.batch_size", "256",
        "--train.epochs", str(epochs), "--train.knn_every", str(epochs), "--train.out_dir", out_dir,
        "--log.progress", "false", "--log.tensorboard", "false", *(overrides or [])])
    summary = pretrain(cfg)
    return {
        "benchmark": "B2", "backbone": "resnet18-cifar@0.25", "epochs": epochs, "batch": 256,
        "train_images": summary["train_images"], "test_images": 10000,
        "knn_untrained_top1": summary.get("knn_untrained_top1"), "knn_top1": summary.get("knn_final_top1"),
        "knn_k": cfg.train.knn_k, "knn_temperature": cfg.train.knn_temperature,
        "optimizer": cfg.optim.name, "base_lr": cfg.optim.base_lr, "precision": summary["precision"],
        "wall_seconds": summary["wall_seconds"], "threads": torch.get_num_threads(),
        "torch": torch.__version__, "commit": commit(), "overrides": overrides or [],
    }


def b3(epochs: int = 200, cifar_dir: str | None = None, out_dir: str = "runs/bench-b3",
       overrides: list[str] | None = None) -> dict:
    """B3: resnet18-cifar on all 50,000 CIFAR-10 training images, batch 512, the fastest settings
    (bf16 where available, channels_last, images resident on the device, torch.compile on a
    GPU); seconds per epoch, wall time, final kNN and the linear probe of the final backbone.
    On the CPU, pass small settings (e.g. --data.limit_per_class 20 --train.batch_size 64)."""
    import shutil

    from byol.checkpoint import load_backbone
    from byol.config import load_config
    from byol.data.image_sets import decode_to_memory
    from byol.data.listing import list_images
    from byol.evaluation.protocols import extract_features, linear_probe
    from byol.core.model import feature_extractor
    from byol.data.splits import first_per_class
    from byol.training.pretrain import pretrain

    cifar_dir = cifar_dir or default_cifar_dir()
    train, test = os.path.join(cifar_dir, "train.tar.gz"), os.path.join(cifar_dir, "test.tar.gz")
    for f in (train, test):
        if not os.path.exists(f):
            raise DataError(f"B3 needs the CIFAR-10 copy: {f} not found (--cifar DIR)")
    gpu = torch.cuda.is_available()
    config = "cifar10"  # the packaged recipe
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = load_config(config, [
        "--data.path", train, "--data.val_path", test, "--train.batch_size", "512",
        "--train.epochs", str(epochs), "--train.knn_every", str(epochs), "--train.out_dir", out_dir,
        "--train.compile", "true" if gpu else "false", "--train.log_every", "50",
        "--log.tensorboard", "false", *(overrides or [])])
    summary = pretrain(cfg)
    # linear probe of the final backbone: features computed once, then a linear layer
    device = "cuda" if gpu else "cpu"
    net = feature_extractor(load_backbone(summary["checkpoint"]), cfg.model.hidden_layer).to(device)
    size = cfg.data.image_size
    train_list = list_images(train)
    if cfg.data.limit_per_class:  # the images that were pretrained on
        train_list = first_per_class(train_list, cfg.data.limit_per_class)
    tr, te = decode_to_memory(train_list, size), decode_to_memory(list_images(test), size)
    kw = dict(mean=cfg.augment.mean, std=cfg.augment.std, image_size=size, device=device)
    with torch.autocast(device, dtype=torch.bfloat16, enabled="bf16" in summary["precision"]):
        ftr, fte = extract_features(net, tr.images, **kw), extract_features(net, te.images, **kw)
    linear = linear_probe(ftr, tr.labels, fte, te.labels, epochs=100 if gpu else 10)
    return {
        "benchmark": "B3", "backbone": "resnet18-cifar@" + str(cfg.model.backbone_args.get("width", 1.0)),
        "epochs": epochs, "batch": cfg.train.batch_size, "train_images": summary["train_images"],
        "device": torch.cuda.get_device_name(0) if gpu else "cpu", "precision": summary["precision"],
        "compile": cfg.train.compile, "wall_seconds": summary["wall_seconds"],
        "seconds_per_epoch": round(summary["wall_seconds"] / epochs, 2),
        "knn_top1": summary.get("knn_final_top1"), "knn_untrained_top1": summary.get("knn_untrained_top1"),
        "linear_top1": linear["top1"], "linear_epochs": linear["epochs"],
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if gpu else None,
        "torch": torch.__version__, "commit": commit(), "overrides": overrides or [],
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["variant"]:  # one B1 variant, in its own process (see throughput)
        v, b, w, s, wu, d = argv[1:7]
        print(json.dumps(run_variant(v, int(b), float(w), int(s), int(wu), d)))
        return 0
    p = argparse.ArgumentParser(description="B1 (throughput), B2 and B3 of BENCHMARKS.md, JSON lines on stdout")
    p.add_argument("name", choices=["throughput", "b2", "b3"])
    p.add_argument("--epochs", type=int, help="b2/b3: pretraining epochs (default 10 / 200)")
    p.add_argument("--cifar", help="b2/b3: folder with CIFAR-10 train.tar.gz and test.tar.gz (or BYOL_CIFAR10_DIR)")
    p.add_argument("--out", help="b2/b3: run folder (default runs/bench-NAME)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--variants", default="default", help="comma list: " + ",".join(VARIANTS) + " or all")
    args, extra = p.parse_known_args(argv)
    if extra and args.name == "throughput":
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.name in ("b2", "b3"):
            run = b2 if args.name == "b2" else b3
            epochs = args.epochs or (10 if args.name == "b2" else 200)
            print(json.dumps(run(epochs, args.cifar, args.out or f"runs/bench-{args.name}", extra)), flush=True)
            return 0
        for result in throughput(batch_size=args.batch_size, width=args.width, steps=args.steps,
                                 warmup=args.warmup, variants=args.variants, device=args.device,
                                 repeats=args.repeats):
            print(json.dumps(result), flush=True)
    except (DataError, ValueError) as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
