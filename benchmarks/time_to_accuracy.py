"""Time to accuracy: pretraining seconds until kNN on the validation split first reaches a level.

The level is a reference library's kNN top-1 after a given number of epochs (mean over its
seeds), e.g. lightly's after 10 or 30 epochs. Every run is read from the rows that
`compare.py --curve` prints (one JSON line per library and seed, each with its curve: kNN
top-1 after every epoch and the pretraining seconds up to it, the kNN evaluations' own time
left out and stated as curve_eval_seconds). Runs are grouped by --label (e.g. byol,
byol+levers; the library's name where there is none) and by run length.

    # the runs, alone on the cores, one file per run (B2 protocol, validation split, fp32)
    python benchmarks/compare.py --cifar DIR --split val --comparison fp32 --curve --epochs 10 \\
        --libraries lightly --seeds 0 > lightly.jsonl
    python benchmarks/compare.py --cifar DIR --split val --comparison fp32 --curve --epochs 10 \\
        --libraries byol --seeds 0 --label byol > byol.jsonl
    python benchmarks/compare.py --cifar DIR --split val --comparison fp32 --curve --epochs 10 \\
        --libraries byol --seeds 0 --label byol+cifar10-fast --config cifar10-fast > fast.jsonl
    # the summary: time to lightly's 10-epoch level, and its ratio to lightly's own time
    python benchmarks/time_to_accuracy.py --reference lightly --at 10 lightly.jsonl byol.jsonl fast.jsonl

Prints one JSON object per group (name and epochs): the level, for each seed the first epoch
and the seconds at which its own curve reached it (null if it never did), their mean and
spread, and the mean as a fraction of the reference's own mean time to the level: the
reference is timed by its first crossing too, never by the epoch that set the level.
"""
from __future__ import annotations

import argparse
import json
import sys


def read_rows(paths: list[str]) -> list[dict]:
    """The rows of compare.py --curve runs (not their summaries) in these files."""
    try:
        from compare import read_json_lines  # beside this script; compare.py imports torch
    except ImportError as e:
        sys.exit(f"time_to_accuracy: reading the rows needs compare.py's environment ({e}): "
                 "run this script with the python that ran compare.py")

    return [r for r in read_json_lines(paths, "time_to_accuracy:") if r.get("curve")]


def name(row: dict) -> str:
    return row.get("label") or row["library"]


def group(row: dict) -> tuple[str, int | None]:
    """Runs are grouped by name (--label, else the library) and run length: a 10-epoch and a
    20-epoch run are two groups, never two seeds of one."""
    return name(row), row.get("epochs")


def first_reach(curve: list, level: float) -> tuple[int, float] | None:
    """(epoch, seconds) of the curve's own first point at or above `level`; None if none is
    (curves.first_crossing, the one definition of a first crossing)."""
    from curves import first_crossing

    hit = first_crossing(curve, level)
    return (hit[0], hit[1]) if hit else None


def spread(values: list[float]) -> dict:
    """Mean and sample standard deviation (None for one value)."""
    import statistics

    return {"mean": round(statistics.mean(values), 1),
            "stdev": round(statistics.stdev(values), 1) if len(values) > 1 else None}


def summarize(rows: list[dict], reference: str, at: int) -> list[dict]:
    """For every group, the reference's included: each seed's own first crossing of the level
    (the reference's mean kNN after epoch `at`), the same evaluation after every epoch, its time
    left out for all; how many seeds reached it, the mean and spread over those, and the mean
    as a fraction of the reference's own mean time to that level (over its seeds that reached
    it: the level is their mean, so a seed below it may never reach it)."""
    ref = [r for r in rows if name(r) == reference]
    if len({r.get("epochs") for r in ref}) > 1:
        sys.exit(f"time_to_accuracy: the rows hold {reference} runs of different lengths "
                 f"({', '.join(sorted(str(r.get('epochs')) for r in ref))} epochs): give one length of the reference")
    points = [next((p for p in r["curve"] if p[0] == at), None) for r in ref]
    if not ref or None in points:
        sys.exit(f"time_to_accuracy: no {reference} curve reaches epoch {at} in these rows")
    level = sum(p[2] for p in points) / len(points)
    for key in ("split", "comparison", "cpu_kind", "device", "train_images", "backbone", "batch", "threads"):
        values = sorted({str(r.get(key)) for r in rows})
        if len(values) > 1:
            sys.exit(f"time_to_accuracy: the rows differ in {key} ({', '.join(values)}): compare like with like")
    if rows[0].get("comparison") not in (None, "defaults") and len({str(r.get("precision")) for r in rows}) > 1:
        sys.exit(f"time_to_accuracy: the {rows[0]['comparison']} comparison holds rows of several precisions "
                 f"({', '.join(sorted({str(r.get('precision')) for r in rows}))}): compare like with like")
    ref_seconds = [hit[1] for hit in (first_reach(r["curve"], level) for r in ref) if hit]
    ref_mean = sum(ref_seconds) / len(ref_seconds) if ref_seconds else None
    out = []
    for key in dict.fromkeys(group(r) for r in rows):
        mine = [r for r in rows if group(r) == key]
        seeds = [r["seed"] for r in mine]
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            sys.exit(f"time_to_accuracy: the rows hold seed {twice[0]} of {key[0]} ({key[1]} epochs) twice: "
                     "give each run its own compare.py --label")
        reached = [first_reach(r["curve"], level) for r in mine]
        seconds = [hit[1] for hit in reached if hit]
        mean = sum(seconds) / len(seconds) if seconds else None
        out.append({"group": key[0], "epochs": key[1], "level_knn_top1": round(level, 2),
                    "level_from": f"{reference} epoch {at} (mean of its seeds)",
                    "seeds": seeds, "epochs_to_level": [hit[0] if hit else None for hit in reached],
                    "seconds_to_level": [hit[1] if hit else None for hit in reached],
                    "seconds_to_level_mean": round(mean, 1) if mean is not None else None,
                    "reached": f"{len(seconds)} of {len(mine)} seeds",
                    "seconds_to_level_stdev": spread(seconds)["stdev"] if seconds else None,
                    "reference_seconds_to_level_mean": round(ref_mean, 1) if ref_mean is not None else None,
                    "fraction_of_reference_time": round(mean / ref_mean, 3) if mean is not None and ref_mean else None,
                    "final_knn_top1": [r["knn_top1"] for r in mine],
                    "final_knn_top1_spread": spread([r["knn_top1"] for r in mine]),
                    "eval_seconds_left_out": [r.get("curve_eval_seconds") for r in mine],
                    "precision": sorted({str(r.get("precision")) for r in mine}),
                    "device": mine[0].get("device", "cpu"), "threads": mine[0].get("threads"),
                    "workers": sorted({str(r.get("workers")) for r in mine}),
                    "commit": sorted({str(r.get("commit")) for r in mine}),
                    "cpu_kind": mine[0].get("cpu_kind"), "split": mine[0].get("split")})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("rows", nargs="+", help="JSON-lines files printed by compare.py --curve")
    p.add_argument("--reference", default="lightly", help="the group whose kNN sets the level (default lightly)")
    p.add_argument("--at", type=int, required=True, help="the reference's epoch whose kNN is the level")
    args = p.parse_args(argv)
    rows = read_rows(args.rows)
    if not rows:
        sys.exit(f"time_to_accuracy: {' '.join(args.rows)}: no rows with a curve (run compare.py with --curve)")
    for line in summarize(rows, args.reference, args.at):
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
