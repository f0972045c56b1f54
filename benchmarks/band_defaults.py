"""How the full-precision brightness and contrast defaults were chosen (byol.training.plan
BAND_BRIGHTNESS and BAND_CONTRAST, in standard deviations of each band): kNN top-1 on held-out
images before and after a run of the demo recipe for each candidate, on two validation sets
generated with seed 1 (benchmarks/bands.py reports on the demo's own data, seed 0, and other
training seeds):

- "textures as 3 bands": the demo's ten grey textures (byol.data.demo.render) written as three
  16-bit bands with the multi-band demo's offsets and gains;
- "textures in 8 bands": the same, in eight bands that all show the class texture.

Training seeds as --seeds says (each candidate run on each), 10 epochs, no rotations; band
dropout as each row says. A choice made on these sets, not a measured optimum for real sensors.

    python benchmarks/band_defaults.py --seeds 0,1,2 --out benchmarks/results/band_defaults.jsonl
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# set -> [(brightness, contrast, band_drop_p), ...]
CANDIDATES = {
    "textures as 3 bands": [(0.4, 0.4, 0.0), (1.2, 0.4, 0.0), (1.2, 0.8, 0.0), (1.77, 0.4, 0.0), (1.77, 0.8, 0.0)],
    "textures in 8 bands": [(0.4, 0.4, 0.0), (1.2, 0.8, 0.1)],
}
BANDS = {"textures as 3 bands": 3, "textures in 8 bands": 8}


def generate(out: Path, bands: int, per_class: int, seed: int = 1) -> Path:
    """out/train and out/test of (bands, 32, 32) uint16 arrays, every band showing the class texture."""
    from byol.data.demo import in_bands, render, write_classes

    def save(label: int, rng: np.random.Generator, path: Path) -> None:
        texture = render(label, rng)[..., 0].astype(np.float64) / 255
        np.save(path.with_suffix(".npy"), in_bands([texture] * bands, rng))

    return write_classes(out, f"textures in {bands} bands {per_class} {seed}", save, per_class, per_class // 3, seed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-class", type=int, default=300, help="training images of each class (held out: a third)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0", help="comma-separated train.seed values, each candidate run on each")
    p.add_argument("--out", help="append the rows to this JSONL file")
    args = p.parse_args(argv)
    import torch
    from bands import run_one
    from bench import commit, cpu_kind, emit

    seeds = [int(v) for v in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for name, candidates in CANDIDATES.items():
            data = generate(Path(tmp) / name.replace(" ", "-"), BANDS[name], args.per_class)
            for brightness, contrast, drop in candidates:
                for seed in seeds:
                    extra = [a for view in ("view1", "view2") for k, v in (("brightness", brightness), ("contrast", contrast),
                                                                           ("rot90_p", 0.0), ("band_drop_p", drop))
                             for a in (f"--augment.{view}.{k}", str(v))]
                    out = Path(tmp) / f"run-{BANDS[name]}-{brightness}-{contrast}-{drop}-{seed}"
                    row = {"benchmark": "band-defaults", "set": name, "brightness": brightness, "contrast": contrast,
                           "band_drop_p": drop, **run_one(data, out, args.epochs, seed, extra),
                           "data_seed": 1, "cpu_kind": cpu_kind(), "torch": torch.__version__, "commit": commit(),
                           "benchmark_command": shlex.join(["python", "benchmarks/band_defaults.py", *(argv or sys.argv[1:])])}
                    emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
