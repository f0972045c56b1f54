"""Continued pretraining: BYOL from weights that already know one image domain, on another.

The start: the quick start (`byol pretrain --data.path A --train.epochs E`) on domain A,
CIFAR-10's first five classes (airplane, automobile, bird, cat, deer), exported. Then, on
domain B (dog, frog, horse, ship, truck; --per-class training images of each), one run per
variant and seed:

    scratch    byol pretrain --data.path B ...                    (random initial weights)
    weights    ... --model.init_weights START.safetensors         (the recipe a user gets)
    gentle     ... --model.init_weights START.safetensors --optim.base_lr LR/10 --model.tau_base 0.99
               (a lower learning rate and a slower target, as adapting pretrained weights
               is usually done)
    backbone-slow  ... --model.init_weights START.safetensors --optim.backbone_lr_scale 0.1
               (the new heads at the recipe's rate, the pretrained backbone at a tenth:
               fine-tuning's usual way of keeping what the weights know)
    heads-first    ... --model.init_weights START.safetensors --optim.backbone_held_epochs E/4
               (the backbone held still for the first quarter of the run while the new heads
               learn, then trained with them: linear probing, then fine-tuning)

Each run is scored by kNN top-1 (k 200, T 0.1) before its first step and at the end, on
held-out images of B: --split val holds out 10 % of each B class of the training images (the
split choices are made on); --split test scores on --test-per-class images of each B class of
CIFAR-10's test set (the seeds reported, never used for a choice). For a run from weights the
start is those weights, and the verdict (McNemar's exact test, paired images) says whether
continuing helped against them; for scratch it is the untrained network.

    python benchmarks/continued.py --cifar ../shared/data/cifar10 --split val --seeds 400 \\
        --out benchmarks/results/continued.jsonl
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

DOMAIN_A = ["airplane", "automobile", "bird", "cat", "deer"]
DOMAIN_B = ["dog", "frog", "horse", "ship", "truck"]
VARIANTS = {  # name -> the arguments the run adds (START: the exported weights of domain A)
    "scratch": [],
    "weights": ["--model.init_weights", "START"],
    "gentle": ["--model.init_weights", "START", "--optim.base_lr", "0.006", "--model.tau_base", "0.99"],
    "backbone-slow": ["--model.init_weights", "START", "--optim.backbone_lr_scale", "0.1"],
    "heads-first": ["--model.init_weights", "START", "--optim.backbone_held_epochs", "EPOCHS/4"],
}


def start_weights(cifar: str, tmp: Path, per_class: int, epochs: int) -> tuple[Path, dict]:
    """Domain A's quick start, exported: (the .safetensors, its run's row)."""
    from quickstart import run_one, write_photos

    folder = tmp / "A"
    write_photos(cifar, folder, per_class, 0, None, DOMAIN_A)
    row = run_one(folder, tmp / "runA", epochs, 0, [])
    out = tmp / "start.safetensors"
    proc = subprocess.run([sys.executable, "-m", "byol.cli", "export", str(tmp / "runA" / "checkpoints" / "last.ckpt"),
                           "-o", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"continued: the export failed: {proc.stderr.strip().splitlines()[-1:]}")
    return out, row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", required=True, help="folder with CIFAR-10's train.tar.gz and test.tar.gz (JPEG copy)")
    p.add_argument("--per-class", type=int, default=300, help="training images of each class, in A and in B")
    p.add_argument("--test-per-class", type=int, default=200, help="test images of each B class (--split test)")
    p.add_argument("--epochs", type=int, default=12, help="epochs of every run, the start's too")
    p.add_argument("--split", choices=("val", "test"), required=True)
    p.add_argument("--seeds", default="400", help="comma-separated train.seed values of the B runs")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", help="append the rows to this JSONL file")
    args = p.parse_args(argv)
    from bench import commit, emit
    from quickstart import run_one, write_photos

    commit()  # the commit checked out now names every row, whatever is committed while the runs go on
    for name in (n for n in ("train", "test") if not (Path(args.cifar) / f"{n}.tar.gz").exists()):
        sys.exit(f"continued: {args.cifar}/{name}.tar.gz not found; pass --cifar DIR (the folder holding both)")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"continued: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        start, start_row = start_weights(args.cifar, tmp, args.per_class, args.epochs)
        print(f"continued: start weights from domain A: kNN top-1 on A's held-out images "
              f"{start_row['knn_untrained_top1']:.3f} untrained -> {start_row['knn_final_top1']:.3f}", file=sys.stderr)
        folder = tmp / "B"
        write_photos(args.cifar, folder, args.per_class, 0, None, DOMAIN_B)
        extra = []
        if args.split == "test":
            write_photos(args.cifar, tmp / "B-test", args.test_per_class, 0, None, DOMAIN_B, split="test")
            extra = ["--data.val_path", str(tmp / "B-test")]
        for seed in (int(s) for s in args.seeds.split(",")):
            for variant in variants:
                added = [str(start) if a == "START" else str(args.epochs / 4) if a == "EPOCHS/4" else a
                         for a in VARIANTS[variant]]
                row = run_one(folder, tmp / f"run-{variant}-{seed}", args.epochs, seed, [*extra, *added])
                row = {**row, "benchmark": "continued", "variant": variant, "split": args.split,
                       "data": "CIFAR-10, domain B (dog, frog, horse, ship, truck)", "per_class": args.per_class,
                       "start": ("none (random)" if variant == "scratch" else
                                 f"the quick start on domain A ({', '.join(DOMAIN_A)}; {5 * args.per_class} images, "
                                 f"{args.epochs} epochs, seed 0), exported"),
                       "start_knn_on_a": [start_row["knn_untrained_top1"], start_row["knn_final_top1"]],
                       "command": shlex.join(["python", "benchmarks/continued.py", *(argv or sys.argv[1:])]),
                       "run_command": row["command"].replace(str(tmp), "TMP")}
                emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
