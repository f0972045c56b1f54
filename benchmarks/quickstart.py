"""The README's quick start, as a new user runs it, on a folder of real photos.

Writes a folder of CIFAR-10 training images in class folders (--per-class of each class,
chosen with --pick-seed; --side N upscales them, bicubic, and saves JPEGs at quality 90, as
photos of 96-224 px; --textures: the demo's generated grey textures instead; --digits: grayscale
digits drawn with Pillow's built-in font, each in its own size, slant, stroke and place), then runs

    byol pretrain --data.path FOLDER --train.epochs E --train.out_dir OUT --train.seed S

in a process of its own for each seed, and writes one result row per run: the kNN top-1 of
the untrained and the final network on the 10 % of each class that the run holds out, the
verdict (helped, no clear change, got worse) with its McNemar p, the images, steps, wall
time and precision, and the provenance (CPU kind, torch, commit, the command).

    python benchmarks/quickstart.py --cifar ../shared/data/cifar10 --epochs 12 --seeds 200,201,202 \
        --out benchmarks/results/quickstart.jsonl
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


def write_photos(cifar: str, folder: Path, per_class: int, pick_seed: int, side: int | None,
                 classes: list[str] | None = None, split: str = "train") -> int:
    """`per_class` images of each class (of `classes` only, if given) of CIFAR-10's `split`
    (train, test) into folder/<class>/, at `side` px if given."""
    import tarfile

    import numpy as np
    from PIL import Image

    archive = os.path.join(cifar, f"{split}.tar.gz")
    if not os.path.exists(archive):
        sys.exit(f"quickstart: {archive} not found; pass --cifar DIR (the folder holding train.tar.gz)")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        by_class: dict[str, list] = {}
        for m in members:
            by_class.setdefault(m.name.split("/")[-2], []).append(m)
        rng = np.random.default_rng(pick_seed)
        count = 0
        for name, group in sorted(by_class.items()):
            if classes is not None and name not in classes:
                continue
            (folder / name).mkdir(parents=True, exist_ok=True)
            for i in rng.choice(len(group), per_class, replace=False):
                member = group[int(i)]
                data = tar.extractfile(member).read()
                target = folder / name / Path(member.name).name
                if side:
                    import io

                    img = Image.open(io.BytesIO(data)).convert("RGB").resize((side, side), Image.BICUBIC)
                    img.save(target, quality=90)
                else:
                    target.write_bytes(data)
                count += 1
    return count


DIGITS_SIDE = 28  # px, as MNIST's
PHOTOS_SIDE = 32  # px, CIFAR-10's (also the demo textures')


def write_digits(folder: Path, per_class: int, pick_seed: int, side: int) -> int:
    """`per_class` grayscale images (one channel, PNG) of each digit 0-9 into folder/<digit>/ at
    `side` px: the digit drawn white on a dark ground with Pillow's
    built-in font (the same on every machine), at a random size (45-80 % of the side), stroke
    width, rotation (+-20 degrees), shear and place, drawn at twice the side and shrunk
    (antialiased), with a little noise, so that no two images of a class are alike."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    big = 2 * side
    rng = np.random.default_rng(pick_seed)
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            font = ImageFont.load_default(size=int(big * rng.uniform(0.45, 0.8)))
            ground, stroke = int(rng.integers(0, 40)), int(rng.integers(0, 3))
            canvas = Image.new("L", (big, big), ground)
            draw = ImageDraw.Draw(canvas)
            x0, y0, x1, y1 = draw.textbbox((0, 0), str(digit), font=font, stroke_width=stroke)
            place = ((big - (x1 - x0)) / 2 - x0 + rng.uniform(-0.12, 0.12) * big,
                     (big - (y1 - y0)) / 2 - y0 + rng.uniform(-0.12, 0.12) * big)
            ink = int(rng.integers(180, 256))
            draw.text(place, str(digit), fill=ink, font=font, stroke_width=stroke, stroke_fill=ink)
            shear = rng.uniform(-0.3, 0.3)
            canvas = canvas.transform(canvas.size, Image.AFFINE, (1, shear, -shear * big / 2, 0, 1, 0),
                                      resample=Image.BILINEAR, fillcolor=ground)
            canvas = canvas.rotate(rng.uniform(-20, 20), resample=Image.BILINEAR, fillcolor=ground)
            small = np.asarray(canvas.resize((side, side), Image.LANCZOS), dtype=np.float32)
            small = np.clip(small + rng.normal(0, 6, small.shape), 0, 255).astype(np.uint8)
            Image.fromarray(small, mode="L").save(folder / str(digit) / f"{i:04d}.png")
    return 10 * per_class


def run_one(folder: Path, out: Path, epochs: int, seed: int, extra: list[str]) -> dict:
    import torch

    from bench import commit, cpu_kind

    command = ["byol", "pretrain", "--data.path", str(folder), "--train.epochs", str(epochs),
               "--train.out_dir", str(out), "--train.seed", str(seed), *extra]
    start, load_before = time.time(), os.getloadavg()
    proc = subprocess.run([sys.executable, "-m", "byol.cli", *command[1:]], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"quickstart: the run failed: {proc.stderr.strip().splitlines()[-1:]}")
    summary = json.loads((out / "summary.json").read_text())
    verdict = summary["verdict"]
    notes = [n for n in summary.get("notes", []) if n.startswith("recipe for the data")]
    return {"benchmark": "quickstart", "seed": seed, "epochs": epochs, "train_images": summary["train_images"],
            "steps": summary["steps"], "held_out_images": summary.get("knn_test_images"),
            "grayscale": summary["grayscale"],  # as the run decided it (byol.data.image_sets.looks_grayscale)
            "knn_untrained_top1": summary.get("knn_untrained_top1"), "knn_final_top1": summary.get("knn_final_top1"),
            "outcome": verdict.get("outcome"), "p_value": verdict.get("p_value"),
            "wall_seconds": summary["wall_seconds"], "process_seconds": round(time.time() - start, 1),
            "precision": summary["precision"], "recipe_note": notes[0] if notes else None,
            "curve": [[r["step"], r["top1"]] for r in summary.get("knn", [])],
            "cpu_kind": cpu_kind(), "threads": torch.get_num_threads(), "cores": os.cpu_count(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],  # 1, 5, 15 min: other work beside the run
            "torch": torch.__version__,
            "commit": commit(), "command": shlex.join(command)}


DATA = {(False, False): "CIFAR-10 photos", (True, False): "demo textures", (False, True): "rendered digits"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--cifar", help="folder with CIFAR-10's train.tar.gz (JPEG copy)")
    source.add_argument("--textures", action="store_true",
                        help="the demo's generated grey textures (byol.data.demo) instead of photos")
    source.add_argument("--digits", action="store_true",
                        help=f"grayscale digits drawn with Pillow's font ({DIGITS_SIDE} px unless --side) instead of photos")
    p.add_argument("--per-class", type=int, default=200, help="images of each class (200: 2,000 in all)")
    p.add_argument("--pick-seed", type=int, default=0, help="seed of the choice of images")
    p.add_argument("--side", type=int, help=f"upscale to this side (photos of 96-224 px); default: CIFAR's {PHOTOS_SIDE}, the digits' {DIGITS_SIDE}")
    p.add_argument("--epochs", type=int, default=50, help="the README's quick start: 50")
    p.add_argument("--seeds", default="200", help="comma-separated train.seed values, never used for a choice")
    p.add_argument("--out", help="append the rows to this JSONL file")
    p.add_argument("--set", action="append", default=[], metavar="--KEY VALUE",
                   help="an extra argument of the command (a comparison, e.g. --set=--config --set=cifar10)")
    args = p.parse_args(argv)
    side = args.side or (DIGITS_SIDE if args.digits else PHOTOS_SIDE)
    from bench import commit, emit

    commit()  # the commit checked out now names every row, whatever is committed while the runs go on
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        if args.textures:
            from byol.data.demo import CLASSES, generate_textures

            generate_textures(Path(tmp) / "textures", args.per_class, 0, side, args.pick_seed)
            folder, n = Path(tmp) / "textures" / "train", args.per_class * len(CLASSES)
        elif args.digits:
            n = write_digits(folder, args.per_class, args.pick_seed, side)
        else:
            n = write_photos(args.cifar, folder, args.per_class, args.pick_seed, args.side)
        print(f"quickstart: {n} images in {folder}", file=sys.stderr)
        for seed in (int(s) for s in args.seeds.split(",")):
            row = {**run_one(folder, Path(tmp) / f"run{seed}", args.epochs, seed, args.set),
                   "data": DATA[(args.textures, args.digits)], "per_class": args.per_class,
                   "pick_seed": args.pick_seed, "side": side}
            emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
