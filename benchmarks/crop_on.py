"""Where photos' crops are cut, end to end: training images/s of a short streamed run with the
crops cut on the training device (data.crop_on device) and in the data workers (workers), on
the same files, network, settings and machine. Its rows decide data.crop_on auto on a CPU
(benchmarks/results.py summarises them into src/byol/training/crop_speed.json, which the run
plan reads).

The run: `byol pretrain` on a folder of photos (data.large_images full, streamed, the default
workers), the default network (ResNet-18) at 224 px, batch 32, the default precision (auto),
no kNN monitor. The first --warm steps (start-up, the workers' first batches) are not timed;
the rate is the images of the steps after them over their time. Each path runs --repeats
times, alternating, each run a process of its own.

The photos: as benchmarks/loader.py makes them (CIFAR-10 images upscaled to --size with a
photo's noise, JPEG quality 90), or a folder of your own (--photos).

    python benchmarks/crop_on.py --cifar ../shared/data/cifar10 --images 320 --repeats 3 \\
        --out benchmarks/results/crop_on.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

PATHS = ("device", "workers")
BATCH, SIDE = 32, 224


def settings(folder: str, out: str, crop_on: str, images: int) -> dict:
    """The run's config: everything but data.crop_on the same for both paths."""
    return {"data": {"path": folder, "in_memory": False, "large_images": "full", "crop_on": crop_on,
                     "image_size": SIDE, "limit": images},
            "train": {"epochs": 1, "batch_size": BATCH, "knn_every": 0, "out_dir": out},
            "log": {"report": False, "progress": False, "tensorboard": False}}


def timed_run(folder: str, crop_on: str, images: int, warm: int) -> dict:
    """One run in this process: images/s of its steps after the first `warm`."""
    import lightning as L

    from byol.training.pretrain import pretrain

    class Clock(L.Callback):
        def __init__(self):
            self.ends: list[float] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.ends.append(time.perf_counter())

    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        summary = pretrain(settings(folder, out, crop_on, images), callbacks=[clock])
    timed = clock.ends[warm:]
    seconds = timed[-1] - clock.ends[warm - 1]
    return {"images_per_s": round(len(timed) * BATCH / seconds, 2), "timed_steps": len(timed),
            "seconds": round(seconds, 2), "precision": summary["precision"]}


def run_child(folder: str, crop_on: str, images: int, warm: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, __file__, "--child", crop_on, "--photos", folder, "--images", str(images),
                           "--warm", str(warm)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"crop_on: the {crop_on} run failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", help="folder with CIFAR-10's train.tar.gz: the photos are made from its images")
    p.add_argument("--photos", help="a folder of your own JPEG photos (class sub-folders) instead")
    p.add_argument("--size", default="500x375", help="WIDTHxHEIGHT of the made photos")
    p.add_argument("--images", type=int, default=320, help="photos in the run (its steps: images / 32)")
    p.add_argument("--warm", type=int, default=3, help="steps not timed at the start")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="append the row to this JSONL file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(timed_run(args.photos, args.child, args.images, args.warm)))
        return 0
    if not (args.cifar or args.photos):
        p.error("give --cifar DIR (photos made from CIFAR-10) or --photos DIR")
    from bench import commit, emit
    from loader import photos_folder, ratio, spread

    from byol.training.facts import cpu_name, usable_cores

    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = photos_folder(args, Path(tmp), "crop_on")
        load = os.getloadavg()
        runs: dict[str, list[dict]] = {path: [] for path in PATHS}
        for _ in range(args.repeats):  # alternating, so that a drift in the machine touches both alike
            for path in PATHS:
                runs[path].append(run_child(folder, path, args.images, args.warm))
    row = {"benchmark": "crop_on", "what": f"ResNet-18 at {SIDE} px, batch {BATCH}, on "
                                           + (f"{width} x {height} JPEG photos" if not args.photos else "own photos"),
           "photos": args.images, "repeats": args.repeats, "warm_steps": args.warm,
           "precision": runs["device"][0]["precision"]}
    for path in PATHS:
        rates = [r["images_per_s"] for r in runs[path]]
        row[f"{path}_images_per_s"] = round(statistics.fmean(rates), 2)
        row[f"{path}_images_per_s_sd"] = round(spread(rates), 2)
        row[f"{path}_images_per_s_runs"] = rates
    a = {"per_worker": row["device_images_per_s"], "images_per_s": row["device_images_per_s"],
         "images_per_s_sd": row["device_images_per_s_sd"]}
    b = {"per_worker": row["workers_images_per_s"], "images_per_s": row["workers_images_per_s"],
         "images_per_s_sd": row["workers_images_per_s_sd"]}
    row["device_against_workers"] = ratio(a, b)
    row["faster"] = ("neither" if "no difference" in row["device_against_workers"] else
                     "device" if row["device_images_per_s"] > row["workers_images_per_s"] else "workers")
    import torch

    row.update({"cpu_kind": cpu_name()[1], "cores": usable_cores(), "torch": torch.__version__,
                "load_average_before": [round(v, 2) for v in load],
                "load_average_after": [round(v, 2) for v in os.getloadavg()], "commit": commit(),
                "command": shlex.join(["python", "benchmarks/crop_on.py", *(argv or sys.argv[1:])])})
    emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
