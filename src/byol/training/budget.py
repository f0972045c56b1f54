"""Budget advice said before a run: how many steps BYOL needed, on measured data like the run's,
to first beat the untrained network by more than chance (by more than its held-out images can
tell from chance, or by the paired test at the end).

The measurements are the quick-start benchmark's rows (benchmarks/quickstart.py: the README's
command on folders of real photos or the demo's textures, kNN top-1 on the run's held-out
images after every train.knn_every epochs). benchmarks/curves.py summarises them, one entry per
kind of data, into budget.json beside this file; this module only reads that file.
"""
from __future__ import annotations

import json
import math
from importlib import resources

SMALL_IMAGES = 64  # px: at or below it, images are CIFAR-sized: the recipe for the data and the budget advice match by it
MEASURED = "budget.json"
SIMILAR_IMAGES = 5.0  # data within this factor of the run's image count is "similar"
SMALL_DATA_IMAGES = 10_000  # below this, a run with no similar measurement gets the general line


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


def budget_note(epochs: int, per_epoch: int, images: int, side: int, grayscale: bool = False,
                entries: list[dict] | None = None) -> list[str]:
    """The line that says how many steps similar data (similar: size, images, grayscale or
    colour) needed to beat the untrained network, and warns when this run (`epochs` of
    `per_epoch` steps on `images` images of `side` px) has fewer, or that no measured run of
    similar data beat it; where no measured data is similar, a general line for fewer than
    SMALL_DATA_IMAGES images."""
    if epochs == 0 or images <= 0:
        return []
    steps = epochs * per_epoch
    entry = similar(measured() if entries is None else entries, images, side, grayscale)
    if entry is None:
        return [] if images >= SMALL_DATA_IMAGES else [
            f"budget: {images:,} images x {epochs} epochs = {steps:,} steps: BYOL usually needs more images "
            "or more epochs (the paper: 1.28 million images, 300-1000 epochs; CIFAR-10 recipes: 50,000 images, "
            "200-1000 epochs). Check the kNN verdict at the end of the run."]
    needed = entry["median_first_beat"]
    beat = (f"beat the untrained network (by more than the {entry['beat_margin_points']:g} points its "
            f"{entry['held_out_images']} held-out images can tell from chance, 95 %, or by the paired test at the end)")
    line = (f"budget: {images:,} images x {epochs} epochs = {steps:,} steps; on similar data "
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
        more = math.ceil(needed / max(per_epoch, 1))
        line += (f". This run is shorter: expect no clear gain; train.epochs {more} gives "
                 f"{more * per_epoch:,} steps")
    return [line]
