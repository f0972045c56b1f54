"""`byol pretrain`: one Config -> the data, the module, a Lightning Trainer (training/trainer.py)
and the run's records (training/bookkeeping.py), as a short list of named steps.

Run folder (train.out_dir):
    config.yaml            the full config of the run
    checkpoints/last.ckpt  written atomically every train.checkpoint_every epochs
    csv/metrics.csv, tensorboard/   logs (MLflow too with log.mlflow_uri)
    knn.json, summary.json          kNN history and final figures
    report.html, *.png              plots of the run (byol report RUN_DIR rebuilds them)
    .byol-run.lock, .skipped/       the lock that keeps one run in the folder; each process's skipped images
"""
from __future__ import annotations

import os
from pathlib import Path

from byol.config import Config, as_config
from byol.core.augment import scheduled_size
from byol.core.optim import scaled_lr
from byol.training.bookkeeping import check_resume, check_start, close_run
from byol.training.budget import with_budget_note
from byol.training.data import (TrainingData, build_data, decide_from_data, listing, plan_data, steps_per_epoch,
                                usable_cores)
from byol.training.run_folder import holding, recording_skipped, write_config
from byol.training.trainer import (build_trainer, choose_precision, closing_process_group, describe_precision, fit,
                                  prepare_process)


def pretrain(cfg: Config | dict | str | Path, resume: bool = False, net=None, callbacks: list | None = None) -> dict:
    """Pretrain with BYOL as `cfg` says; returns the summary that is also saved as summary.json.

    cfg: a dict of settings ({"data": {"path": ...}, "train": {"epochs": 10}}), a YAML path or
    recipe name (or a list of them, layered), or a byol.config.Config.
    net: your own nn.Module (else cfg.model.backbone is built); callbacks: extra Lightning callbacks.
    Nothing is written until the config, the data and the model have all been checked.
    """
    from byol.training.module import BYOLModule

    cfg = as_config(cfg)
    last = check_start(cfg, resume)
    prepare_process(cfg)
    cfg, data = read_data(cfg)
    print("\n".join([*cfg.notes, plan_line(cfg, data.images), *loader_line(cfg, data)]))
    if resume:  # after the data-aware decisions, which the checkpoint's config holds too
        check_resume(last, cfg, data.identity)
    module = BYOLModule(net, cfg, data)  # a bad backbone or hidden layer fails here, before any file is written
    with holding(cfg, resume), recording_skipped(cfg):
        write_config(cfg)
        monitor = knn_monitor(cfg, data)
        trainer, mlflow = build_trainer(cfg, monitor, callbacks or [], resume)
        with closing_process_group():
            wall = fit(trainer, module, data.loader, last if resume else None)
            return close_run(cfg, trainer, module, data, monitor, wall, mlflow, resume)


def knn_monitor(cfg: Config, data: TrainingData):
    """The kNN monitor on the data's labeled bank and held-out images; None without them."""
    from byol.training.monitors import KNNMonitor

    t = cfg.train
    if data.bank is None:
        return None
    return KNNMonitor(data.bank, data.test, t.knn_every, t.knn_k, t.knn_temperature, Path(t.out_dir) / "knn.json")


def read_data(cfg: Config) -> tuple[Config, TrainingData]:
    """The training data and the Config it was built with: the settings that depend on the data
    are decided before anything is built from them (data.image_size from the images' headers;
    the data-aware augmentation defaults in build_data), each said in its notes."""
    listed = listing(cfg)  # a folder's images, listed once
    cfg = decide_from_data(cfg, listed)
    cfg, data = build_data(cfg, listed)
    return with_budget_note(cfg, data.images, data.grayscale), data


def plan_line(cfg: Config, images: int) -> str:
    """One line said at the start: images, size, steps, global batch, learning rate, precision."""
    t, o = cfg.train, cfg.optim
    world = int(os.environ.get("WORLD_SIZE", t.devices * t.num_nodes))
    per_epoch = steps_per_epoch(cfg, images)
    batch = t.batch_size * world * t.accumulate
    return (f"plan: {images} training images at {cfg.data.image_size} px, {t.epochs} epochs x {per_epoch} steps = "
            f"{t.epochs * per_epoch} steps of {batch} images; {o.name} lr {scaled_lr(o.base_lr, batch):.4g} "
            f"({o.base_lr:g} x {batch}/256); {describe_precision(*choose_precision(t.precision, t.accelerator))}"
            + "".join(f"; {part}" for part in view_plan(cfg)))


LOADER_PROBE = 16  # images decoded in the main process before a streamed run, to say the loader's rate


def loader_line(cfg: Config, data: TrainingData) -> list[str]:
    """For data decoded in worker processes: how many, and about how many images/s they give
    (up to LOADER_PROBE images decoded and augmented here, the random state kept as it was),
    against the images a step takes. Nothing for data in memory. The probe reads through
    StreamImages.load, which reports nothing: an unreadable file is said and counted by the
    workers that meet it in the run."""
    import time

    import torch

    from byol.data.images import DECODE_ERRORS, StreamImages, training_item

    workers, dataset = data.loader.num_workers, data.loader.dataset
    if workers == 0:
        return []
    chosen = (f"data.num_workers {workers}" if cfg.data.num_workers is not None else
              f"{workers} worker process{'es' if workers > 1 else ''} ({usable_cores()} cores, one kept for the "
              "training loop; data.num_workers to choose)")
    if not isinstance(dataset, StreamImages) or len(dataset) == 0:
        return [f"loader: {chosen}"]
    decoded, stride = 0, max(1, len(dataset) // LOADER_PROBE)
    with torch.random.fork_rng():
        start = time.perf_counter()
        for i in range(min(LOADER_PROBE, len(dataset))):
            try:
                x, partner = dataset.load(i * stride)
            except (*DECODE_ERRORS, FileNotFoundError):
                continue
            training_item(x, 0, partner, dataset.transform)
            decoded += 1
        seconds = time.perf_counter() - start
    if decoded == 0:
        return [f"loader: {chosen}"]
    rate = decoded / seconds
    return [f"loader: {chosen}, about {rate * workers:.0f} images/s ({rate:.0f} per process, from "
            f"{decoded} images decoded here); each step takes {cfg.train.batch_size} images. "
            "The progress lines' images/s and the summary's data_wait_share say whether steps wait for data"]


def view_plan(cfg: Config) -> list[str]:
    """What the plan line says of the resolution schedule (the side of each span of epochs, and
    the run's pixels against training at data.image_size throughout) and of multi-crop (the
    small crops, and their cost over the run against the two full views at each epoch's side,
    by pixel count: a full view goes through the online network forward and backward (about 3
    forward passes) and the target forward (1), a small crop through the online network only
    (3))."""
    full, epochs, parts = cfg.data.image_size, cfg.train.epochs, []
    sides = [scheduled_size(cfg.train.resolution_schedule, e / epochs, full) for e in range(epochs)] or [full]
    if cfg.train.resolution_schedule and epochs:
        spans, start = [], 0
        for e in range(1, epochs + 1):
            if e == epochs or sides[e] != sides[start]:
                spans.append(f"{sides[start]} px (epoch{'s' if e - start > 1 else ''} {start + 1}"
                             + (f"-{e})" if e - start > 1 else ")"))
                start = e
        pixels = sum((side / full) ** 2 for side in sides) / epochs
        parts.append(f"views at {', '.join(spans)}: {pixels:.2f}x the pixels of {full} px throughout"
                     + ("" if sides[-1] == full else f"; the run ends below data.image_size {full} px, the side "
                        "the network is evaluated and exported at")
                     + ("" if 3 * min(sides) >= 2 * full else
                        f"; {min(sides)} px is below 2/3 of {full} px: with the random crop's zoom (about 1.45x) "
                        "those views show objects smaller than evaluation does (measured on CIFAR-10: a 16-px start "
                        "cost 1.7 kNN points over 10 epochs); start near 0.75 of the side"))
    a = cfg.augment
    if a.small_crops:
        compute = a.small_crops * 3 * a.small_side ** 2 * len(sides) / sum(2 * 4 * side ** 2 for side in sides)
        memory = a.small_crops * a.small_side ** 2 / (2 * max(sides) ** 2)
        parts.append(f"+ {a.small_crops} small crops of {a.small_side} px: about +{100 * compute:.0f} % compute over "
                     f"the run and +{100 * memory:.0f} % activation memory at {max(sides)} px (by pixel count; "
                     "small images run below the full matrix-multiply rate, so more in practice)")
    return parts


def plan(cfg: Config) -> tuple[Config, list[str]]:
    """What `byol pretrain --print-config` says: the settings a run would use (with the
    data-aware decisions), and its notes and plan line. Reads as little of the data as those
    decisions need (plan_data); writes nothing."""
    cfg, images, grayscale = plan_data(cfg)
    cfg = with_budget_note(cfg, images, grayscale)
    return cfg, [*cfg.notes, plan_line(cfg, images)]
