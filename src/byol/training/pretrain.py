"""`byol pretrain`: one Config -> its plan (the facts read once, the decisions made once) -> the
data, the module, a Lightning Trainer (training/trainer.py) and the run's records, as a short
list of named steps.

Run folder (train.out_dir):
    config.yaml            the full config of the run
    plan.json              the facts the run was decided on, each decision with its reason
    checkpoints/last.ckpt  written atomically every train.checkpoint_every epochs
    csv/metrics.csv, tensorboard/   logs (MLflow too with log.mlflow_uri)
    knn.json, summary.json          kNN history, final figures and what reproduces them
    report.html, *.png              plots of the run (byol report RUN_DIR rebuilds them)
    .byol-run.lock, .skipped/       the lock that keeps one run in the folder; each process's skipped images
"""
from __future__ import annotations

import json
from pathlib import Path

from byol.config import Config, as_config
from byol.training.checks import check_resume
from byol.training.data import TrainingData, build_data
from byol.training.facts import Launch, read_facts, read_launch
from byol.training.plan import Plan, decide
from byol.training.run_folder import check_start, holding, recording_skipped, write_run_file
from byol.training.summary import close_run
from byol.training.trainer import (
    build_trainer,
    closing_process_group,
    fit,
)


def pretrain(cfg: Config | dict | str | Path, resume: bool = False, net=None, callbacks: list | None = None) -> dict:
    """Pretrain with BYOL as `cfg` says; returns the summary that is also saved as summary.json.

    cfg: a dict of settings ({"data": {"path": ...}, "train": {"epochs": 10}}), a YAML path or
    recipe name (or a list of them, layered), or a byol.config.Config.
    resume: continue the run in train.out_dir from its last checkpoint.
    net: your own nn.Module (else cfg.model.backbone is built); callbacks: extra Lightning callbacks.
    Nothing is written until the config, the data and the model have all been checked.
    """
    from byol.training.module import BYOLModule

    cfg = as_config(cfg)
    launch = read_launch()
    last = check_start(cfg, resume, launch)
    prepare_process(cfg)
    plan = plan_run(cfg, launch)
    print("\n".join(plan.lines()))
    data = build_data(plan)
    for line in loader_lines(plan, data):
        print(line)
    if resume:  # after the decisions, which the checkpoint's config holds too
        check_resume(last, plan, data.identity)
    module = BYOLModule(net, plan.cfg, data)  # a bad backbone or hidden layer fails here, before any file is written
    print(cost_line(plan, module.model))
    with holding(plan, resume), recording_skipped(plan.cfg):
        write_run_file(plan, "config.yaml", plan.cfg)
        write_run_file(plan, "plan.json", json.dumps(plan.as_dict(), indent=1, default=str))
        trainer, mlflow = build_trainer(plan, data, callbacks or [], resume)
        with closing_process_group():
            wall = fit(trainer, module, data.loader, last if resume else None)
            return close_run(plan, trainer, module, data, wall, mlflow, resume)


def prepare_process(cfg: Config) -> None:
    """This process's CPU threads (train.threads) and random seeds (train.seed), before the data."""
    import lightning as L
    import torch

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)


def plan_run(cfg: Config, launch: Launch | None = None) -> Plan:
    """The plan of a run: its facts read once (byol.training.facts), its decisions made once
    (byol.training.plan.decide). `byol pretrain`, its --print-config, `byol preview` and the
    Python pretrain() all plan through here, so none can say what another does not do."""
    return decide(cfg, read_facts(cfg, launch))


LOADER_PROBE = 16  # images decoded in the main process before a streamed run, to say the loader's rate


def loader_lines(plan: Plan, data: TrainingData) -> list[str]:
    """What the built data adds to the plan's lines: how many of the listed images could not be
    read, where that changed the count; and for data decoded in worker processes, how many and
    about how many images/s they give (up to LOADER_PROBE images decoded and augmented here, the
    random state kept as it was), against the images a step takes. The probe reads through
    StreamImages.load, which reports nothing: an unreadable file is said and counted by the
    workers that meet it in the run."""
    import time

    import torch

    from byol.data.image_sets import StreamImages, training_item
    from byol.data.listing import DECODE_ERRORS

    lines = []
    if plan.train_images is not None and data.images < plan.train_images:
        lines.append(f"{plan.train_images - data.images} of the {plan.train_images} training images could not be "
                     f"read (each said above): the run trains on {data.images}")
    workers, dataset = data.loader.num_workers, data.loader.dataset
    dataset = getattr(dataset, "dataset", dataset)  # a SeededItems' own data set
    if workers == 0:
        return lines
    chosen = f"loader: {plan.workers_reason}"
    if not isinstance(dataset, StreamImages) or len(dataset) == 0:
        return [*lines, chosen]
    done, stride = 0, max(1, len(dataset) // LOADER_PROBE)
    with torch.random.fork_rng():
        start = time.perf_counter()
        for i in range(min(LOADER_PROBE, len(dataset))):
            try:
                item = dataset.decoded(i * stride)
            except (*DECODE_ERRORS, FileNotFoundError):
                continue
            training_item(item, 0, dataset.transform)
            done += 1
        seconds = time.perf_counter() - start
    if done == 0:
        return [*lines, chosen]
    rate = done / seconds
    work = "; the training device cuts their crops" if plan.crop_on == "device" else ""
    return [*lines, f"{chosen}, about {rate * workers:.0f} images/s ({rate:.0f} per process, from "
                    f"{done} images decoded here{work}); each step takes {plan.cfg.train.batch_size} images. "
                    "The progress lines' images/s and the summary's data_wait_share say whether steps wait for data"]


COST_PROBES = (4, 12)  # images per view the cost line times one BYOL step on, each size twice


def cost_line(plan: Plan, model) -> str:
    """What the run will cost, measured before it starts: one BYOL step timed at each size of
    COST_PROBES images per view (probe_seconds); the line through the two times (a step's fixed
    cost and its cost per image) gives the run's batch (step_seconds). Without augmentation and
    the optimiser; the progress lines give the real rate once the run goes."""
    cfg = plan.cfg
    side, epochs, steps = cfg.data.image_size, cfg.train.epochs, cfg.train.epochs * plan.steps_per_epoch
    if steps == 0:
        return "cost: no step (train.epochs 0): the untrained network is evaluated only"
    batch = cfg.train.batch_size * cfg.train.accumulate
    step = step_seconds(probe_seconds(plan, model), cfg.train.batch_size, cfg.train.accumulate)
    small, large = COST_PROBES
    return (f"cost: about {duration(step)} a step of {batch} images per process here (a step timed on "
            f"{small} and on {large} images at {side} px, in {plan.precision}), so about {duration(step * steps)} "
            f"for the run's {steps} steps ({epochs} epochs); without augmentation, data loading and the kNN checks, "
            "which the progress lines' rate includes")


def probe_seconds(plan: Plan, model) -> list[float]:
    """The seconds of one BYOL step (both views through the online network forward and backward,
    the target's forward) at each size of COST_PROBES images per view at data.image_size, in the
    run's precision, each after one untimed step at that size, on a copy of `model` (its weights
    and statistics stay as they are)."""
    import copy
    import time

    import torch

    cfg = plan.cfg
    side = cfg.data.image_size
    probe = copy.deepcopy(model).train()
    memory = torch.channels_last if cfg.train.channels_last else torch.contiguous_format  # as BatchAugment gives views
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(plan.precision)
    seconds = []
    with torch.random.fork_rng():
        for n in COST_PROBES:
            views = [torch.rand(n, cfg.data.channels, side, side).contiguous(memory_format=memory) for _ in range(2)]
            for timed in (False, True):  # the first step at a size sets up its kernels
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=dtype or torch.float32,
                                    enabled=dtype is not None and not plan.facts.hardware.cuda):
                    loss = probe(*views)
                loss.backward()
                if timed:
                    seconds.append(time.perf_counter() - start)
    return seconds


def step_seconds(seconds: list[float], batch_size: int, accumulate: int) -> float:
    """A step's time from the probe steps' `seconds` at COST_PROBES images: each of the
    `accumulate` micro-batches costs the line through the two points (fixed cost plus a cost per
    image, neither below zero) at `batch_size` images."""
    (small, large), (t_small, t_large) = COST_PROBES, seconds
    per_image = max(0.0, (t_large - t_small) / (large - small))
    fixed = max(0.0, t_small - per_image * small)
    return accumulate * (fixed + per_image * batch_size)


def duration(seconds: float) -> str:
    """A time as a person says it: 40 ms, 12 s, 7 min, 3.2 h."""
    if seconds < 1:
        return f"{1000 * seconds:.0f} ms"
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
