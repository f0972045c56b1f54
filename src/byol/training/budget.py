"""Budget advice said before a run: how many steps BYOL needed, on measured data like the run's,
to first beat the untrained network by more than chance (beat_margin, or the paired test).

The measurements are the quick-start benchmark's rows (benchmarks/quickstart.py: the README's
command on folders of real photos or the demo's textures, kNN top-1 on the run's held-out
images after every train.knn_every epochs). benchmarks/results.py summarises them, one entry
per kind of data, into budget.json beside this file; nothing here is typed by hand.
"""
from __future__ import annotations

import json
import math
import statistics
from importlib import resources

from byol.config import Config, updated
from byol.training.data import SMALL_IMAGES, steps_per_epoch

MEASURED = "budget.json"
SIMILAR_IMAGES = 5.0  # data within this factor of the run's image count is "similar"
SMALL_DATA_IMAGES = 10_000  # below this, a run with no similar measurement gets the general line


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


def measured() -> list[dict]:
    """The entries of budget.json (an empty list where the package has none)."""
    try:
        return json.loads(resources.files("byol.training").joinpath(MEASURED).read_text())
    except FileNotFoundError:
        return []


def similar(entries: list[dict], images: int, side: int, grayscale: bool = False) -> dict | None:
    """The measured entry most like a run's data: the same size class (at most SMALL_IMAGES px,
    or above), the number of images within a factor SIMILAR_IMAGES, the same kind (grayscale or
    colour) or a kind no row states; the nearest in images, then in side, then one of the same
    kind. None if none is."""
    near = [e for e in entries if (e["side"] <= SMALL_IMAGES) == (side <= SMALL_IMAGES)
            and abs(math.log(e["train_images"] / max(images, 1))) <= math.log(SIMILAR_IMAGES)
            and e.get("grayscale") in (grayscale, None)]
    return min(near, key=lambda e: (abs(math.log(e["train_images"] / max(images, 1))),
                                    abs(math.log(e["side"] / side)), e.get("grayscale") is None)) if near else None


def budget_note(cfg: Config, images: int, grayscale: bool = False, entries: list[dict] | None = None) -> list[str]:
    """The line that says how many steps similar data (similar: size, images, grayscale or
    colour) needed to beat the untrained network, and warns when this run has fewer, or that
    no measured run of similar data beat it; where no measured data is similar, a general line
    for fewer than SMALL_DATA_IMAGES images."""
    if cfg.train.epochs == 0 or images <= 0:
        return []
    per_epoch = steps_per_epoch(cfg, images)
    steps = cfg.train.epochs * per_epoch
    entry = similar(measured() if entries is None else entries, images, cfg.data.image_size, grayscale)
    if entry is None:
        return [] if images >= SMALL_DATA_IMAGES else [
            f"budget: {images:,} images x {cfg.train.epochs} epochs = {steps:,} steps: BYOL usually needs more images "
            "or more epochs (the paper: 1.28 million images, 300-1000 epochs; CIFAR-10 recipes: 50,000 images, "
            "200-1000 epochs). Check the kNN verdict at the end of the run."]
    needed = entry["median_first_beat"]
    beat = (f"beat the untrained network (by more than the {entry['beat_margin_points']:g} points its "
            f"{entry['held_out_images']} held-out images can tell from chance, 95 %, or by the paired test at the end)")
    line = (f"budget: {images:,} images x {cfg.train.epochs} epochs = {steps:,} steps; on similar data "
            f"({entry['train_images']:,} {entry['data']} at {entry['side']} px) BYOL {beat} "
            f"in {sum(c is not None for c in entry['first_beat_steps'])} of {entry['runs']} runs")
    if needed is None:
        longest, worse = max(n["steps"] for n in entry["lengths"]), entry["ended_worse"]
        line += f" of up to {longest:,} steps" + (f", and ended worse than it by the paired test in {worse}" if worse else "")
        if steps > longest:
            return [line + "; this run is longer than any measured. Check the kNN verdict at the end of the run"]
        return [line + ": expect no clear gain from a run this short" + (", and features that may be worse" if worse else "")]
    ended = "; ".join(f"runs of {n['steps']} steps helped by the paired test on {n['ended_helped']} of {n['runs']} seeds"
                      + (f" and were worse on {n['ended_worse']}" if n["ended_worse"] else "")
                      for n in entry["lengths"])
    line += f", first after about {needed:,} steps (the median of those); {ended}"
    if steps < needed:
        epochs = math.ceil(needed / max(per_epoch, 1))
        line += (f". This run is shorter: expect no clear gain; --train.epochs {epochs} gives "
                 f"{epochs * per_epoch:,} steps")
    return [line]


def with_budget_note(cfg: Config, images: int, grayscale: bool = False) -> Config:
    """cfg, with the budget line (budget_note) in its notes."""
    note = budget_note(cfg, images, grayscale)
    return updated(cfg, {}, note) if note else cfg
