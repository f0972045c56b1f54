"""All bands against RGB only, on the multi-band demo data (byol demo --bands N): kNN top-1 on its
held-out images before and after pretraining, the network pretrained on all N bands and the same
network pretrained on bands 0-2 only (data.bands [0, 1, 2]), each against its own untrained
network by the paired test of the run's verdict.

The data (byol.data.demo.generate_bands): nine classes of textures in the bands after the first
three, while bands 0-2 show the texture of a random other class, so RGB holds no class. The run:
the demo recipe (`--config demo`: ResNet-18 at width 0.25 with the CIFAR stem, SGD, 32 px) for
--epochs epochs, with rotations and band dropout in both variants (SAME), each seed a process of
its own; seeds are used for no choice.

    python benchmarks/bands.py --bands 8 --epochs 20 --seeds 300,301,302 --out benchmarks/results/bands.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

VARIANTS = {"all bands": [], "RGB bands only": ["--data.bands", "[0, 1, 2]"]}
# The plan turns rotations and band dropout on for 4 bands or more only; both variants get them, so
# that the bands are the one difference.
SAME = ["--augment.view1.rot90_p", "0.75", "--augment.view2.rot90_p", "0.75", "--augment.view1.band_drop_p", "0.1",
        "--augment.view2.band_drop_p", "0.1"]


def run_one(data: Path, out: Path, epochs: int, seed: int, extra: list[str]) -> dict:
    command = ["byol", "pretrain", "--config", "demo", "--data.path", str(data / "train"), "--data.val_path",
               str(data / "test"), "--train.epochs", str(epochs), "--train.out_dir", str(out), "--train.seed",
               str(seed), "--log.report", "false", *extra]
    start, load_before = time.time(), os.getloadavg()
    proc = subprocess.run([sys.executable, "-m", "byol.cli", *command[1:]], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bands: the run failed: {proc.stderr.strip().splitlines()[-1:]}")
    summary = json.loads((out / "summary.json").read_text())
    verdict = summary["verdict"]
    return {"seed": seed, "epochs": epochs, "train_images": summary["train_images"], "steps": summary["steps"],
            "held_out_images": summary.get("knn_test_images"),
            "knn_k": summary["knn"][-1]["k"], "knn_untrained_top1": summary.get("knn_untrained_top1"), "knn_final_top1": summary.get("knn_final_top1"),
            "outcome": verdict.get("outcome"), "p_value": verdict.get("p_value"),
            "wall_seconds": summary["wall_seconds"], "process_seconds": round(time.time() - start, 1),
            "precision": summary["precision"], "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()], "command": shlex.join(command)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bands", type=int, default=8)
    p.add_argument("--per-class", type=int, default=300, help="training images of each class (held out: a third)")
    p.add_argument("--epochs", type=int, default=20, help="the demo recipe's")
    p.add_argument("--seeds", default="300", help="comma-separated train.seed values, never used for a choice")
    p.add_argument("--out", help="append the rows to this JSONL file")
    args = p.parse_args(argv)
    import torch

    from bench import commit, cpu_kind, emit

    from byol.data.demo import generate_bands

    commit()
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_bands(Path(tmp) / "data", args.bands, args.per_class, args.per_class // 3)
        for seed in (int(s) for s in args.seeds.split(",")):
            for variant, extra in VARIANTS.items():
                row = {"benchmark": "bands-knn", "variant": variant, "bands": args.bands,
                       "input_bands": args.bands if not extra else 3,
                       "difference": None if not extra else "the network's first convolution takes 3 bands, not "
                                                            f"{args.bands}; everything else the same",
                       **run_one(data, Path(tmp) / f"run-{seed}-{len(extra)}", args.epochs, seed, [*SAME, *extra]),
                       "data": f"byol demo --bands {args.bands} ({args.per_class} training images a class)",
                       "cpu_kind": cpu_kind(), "torch": torch.__version__, "commit": commit(),
                       "benchmark_command": shlex.join(["python", "benchmarks/bands.py", *(argv or sys.argv[1:])])}
                emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
