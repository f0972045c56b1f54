"""kNN curves of benchmark rows: each run's first crossing of a level, its first beat of its own
untrained network, and the quick-start rows summarised into the budget advice the package reads
(src/byol/training/budget.json, written by results.py). The one definition of each, for every
library and benchmark."""
from __future__ import annotations

import math
import statistics

def first_crossing(curve: list, level: float, strictly: bool = False) -> list | None:
    """The first point of a curve at or above `level` (strictly above, with `strictly`); None if
    none is. A point is (step or epoch, ..., accuracy): its first value says when, its last the
    accuracy; the start (when = 0) never counts. Every run's time to a level is its own first
    crossing: the quick-start budget (step, top-1) and time to accuracy (epoch, seconds, kNN)
    both measure it here."""
    return next((list(point) for point in curve if point[0] > 0 and
                 (point[-1] > level if strictly else point[-1] >= level)), None)


BEAT_Z = 1.96  # a 95 % interval


def beat_margin(untrained: float, held_out: int) -> float:
    """The gain in kNN top-1 (a fraction) that `held_out` images can tell from chance: the
    half-width of the 95 % interval of the difference between two accuracies near `untrained`,
    BEAT_Z * sqrt(2 p (1 - p) / n) (two independent proportions; the paired results of one
    network before and after are at least as sure). About 9 points at p 0.3 on 200 images."""
    p = min(max(untrained, 0.0), 1.0)
    return BEAT_Z * math.sqrt(2 * p * (1 - p) / max(held_out, 1))


def first_beat(curve: list, held_out: int, outcome: str | None = None) -> int | None:
    """The step at which a quick-start curve (step, top-1), which starts untrained, first beat
    its untrained value: by more than beat_margin at a point on the way, or at the end by the
    run's paired test (`outcome` "helped", the verdict's McNemar test); None if it never did."""
    margin = beat_margin(curve[0][1], held_out)
    crossing = first_crossing(curve[:-1], curve[0][1] + margin, strictly=True)
    if crossing:
        return crossing[0]
    last = curve[-1]
    if last[0] > 0 and (outcome == "helped" if outcome is not None else last[1] > curve[0][1] + margin):
        return last[0]
    return None


def summarize(rows: list[dict]) -> list[dict]:
    """One entry per kind of data (name, side, training images) from quick-start rows: each
    run's first beat of its own untrained kNN top-1 (first_beat: the margin its held-out images
    can show, or the paired test at the end), their median over the runs that beat it, for each
    run length how many seeds the paired test found helped and how many worse (the row's
    outcome), the margin on the rows' held-out images, and whether the runs took the images as
    grayscale (None where no row says)."""
    kinds: dict[tuple, list[dict]] = {}
    for row in rows:
        kinds.setdefault((row["data"], row["side"], row["train_images"]), []).append(row)
    entries = []
    for (data, side, images), runs in sorted(kinds.items()):
        crossings = [first_beat(r["curve"], r["held_out_images"], r.get("outcome")) for r in runs]
        crossed = sorted(c for c in crossings if c is not None)
        lengths = {}
        for r in sorted(runs, key=lambda r: r["steps"]):
            seen = lengths.setdefault(r["steps"], {"steps": r["steps"], "epochs": r["epochs"], "runs": 0,
                                                   "ended_helped": 0, "ended_worse": 0})
            seen["runs"] += 1
            seen["ended_helped"] += r.get("outcome") == "helped"
            seen["ended_worse"] += r.get("outcome") == "got worse"
        said = {r["grayscale"] for r in runs if "grayscale" in r}
        held = statistics.median_low([r["held_out_images"] for r in runs])
        untrained = statistics.fmean([r["knn_untrained_top1"] for r in runs])
        entries.append({"data": data, "side": side, "train_images": images, "runs": len(runs),
                        "grayscale": said.pop() if len(said) == 1 else None,
                        "held_out_images": held, "beat_margin_points": round(100 * beat_margin(untrained, held), 1),
                        "first_beat_steps": crossings,
                        "ended_worse": sum(n["ended_worse"] for n in lengths.values()),
                        "median_first_beat": statistics.median_low(crossed) if crossed else None,
                        "lengths": list(lengths.values()),
                        "seeds": sorted({r["seed"] for r in runs}),
                        "provenance": sorted({f"{r['cpu_kind']}, {r['precision']}, torch {r['torch']}, "
                                              f"commit {r['commit']}" for r in runs})})
    return entries


