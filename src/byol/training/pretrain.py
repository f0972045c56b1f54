"""`byol pretrain`: data, module, callbacks and a Lightning Trainer, from one Config.

Run folder (train.out_dir):
    config.yaml            the full config of the run
    checkpoints/last.ckpt  written atomically every train.checkpoint_every epochs
    csv/metrics.csv, tensorboard/   logs (MLflow too with log.mlflow_uri)
    knn.json, summary.json          kNN history and final figures
    report.html, *.png              plots of the run (byol report RUN_DIR rebuilds them)
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml

from byol.config import RECIPES_DIR, Config, ConfigError, adapt_to_data, as_config, to_dict
from byol.core.optim import scaled_lr
from byol.data.images import DataError, looks_grayscale
from byol.evaluation.protocols import mcnemar_exact
from byol.training.data import TrainingData, build_data, size_from_data


def cpu_bf16_hardware() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX-512 BF16 or AMX); elsewhere
    bf16 is emulated and slower than fp32."""
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or
                getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def cpu_has_fast_bf16() -> bool:
    """The precision probe's answer: cpu_bf16_hardware(), unless the environment variable
    BYOL_CPU_BF16 (1 or 0) says otherwise, so that a test suite can take either path on any CPU."""
    forced = os.environ.get("BYOL_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    return cpu_bf16_hardware()


def resolve_precision(precision: str, accelerator: str) -> str:
    """'auto': bf16 mixed precision where the hardware runs it fast, else fp32."""
    if precision == "32":
        return "32-true"
    if precision in ("bf16", "16"):
        return f"{precision}-mixed"
    cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if cuda:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_fast_bf16() else "32-true"


def describe_precision(precision: str) -> str:
    """One line for the start of a run: the precision and why it was chosen."""
    names = {"32-true": "fp32", "bf16-mixed": "bf16 autocast (mixed)", "16-mixed": "fp16 autocast (mixed)"}
    why = ""
    if not torch.cuda.is_available():
        why = (" (this CPU multiplies bf16 in hardware)" if cpu_has_fast_bf16()
               else " (this CPU has no AVX-512 BF16 or AMX: fp32 is the fast path)")
    return f"precision: {names.get(precision, precision)}{why}"


def pretrain(cfg: Config | dict | str | Path, resume: bool = False, net=None, callbacks: list | None = None) -> dict:
    """Pretrain with BYOL as `cfg` says; returns the summary that is also saved as summary.json.

    cfg: a dict of settings ({"data": {"path": ...}, "train": {"epochs": 10}}), a YAML path or
    recipe name (or a list of them, layered), or a byol.config.Config.
    net: your own nn.Module (else cfg.model.backbone is built); callbacks: extra Lightning callbacks.
    Nothing is written until the config, the data and the model have all been checked.
    """
    cfg = as_config(cfg)
    import lightning as L

    from byol.training.callbacks import KNNMonitor
    from byol.training.module import BYOLModule

    if cfg.log.mlflow_uri:  # before anything is written, and before the data is read
        from byol.tracking import check_tracking_uri

        check_tracking_uri(cfg.log.mlflow_uri)
    out = Path(cfg.train.out_dir)
    last = check_start(out, resume)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    data = read_data(cfg)
    for line in [*cfg.notes, plan_line(cfg, data)]:
        print(line)
    if resume:  # after the data-aware defaults, which the checkpoint's config holds too
        extended_from = check_resume_config(last, cfg, data.identity)
        if extended_from is not None:
            print(f"resuming {last} with train.epochs raised from {extended_from} to {cfg.train.epochs}: the run "
                  f"continues to epoch {cfg.train.epochs}, its learning-rate and tau cosines stretched to that end")
    module = BYOLModule(net, cfg)  # a bad backbone or hidden layer fails here, before any file is written
    module.train_loader, module.data_identity = data.loader, data.identity
    if data.resident is not None:
        module.keep_on_device(data.resident)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    t = cfg.train
    monitor = None if data.bank is None else KNNMonitor(data.bank, data.test, t.knn_every, t.knn_k,
                                                        t.knn_temperature, out / "knn.json")
    loggers, mlflow = make_loggers(cfg, out, resume)
    trainer = make_trainer(cfg, standard_callbacks(cfg, monitor) + list(callbacks or []), loggers)
    with closing_process_group():
        wall = fit(trainer, module, data.loader, last if resume else None)
        finished = finished_summary(out) if resume else None
        if finished is not None and finished.get("steps") == trainer.global_step:  # nothing left to train
            if trainer.is_global_zero:
                print(f"byol: the run in {out} was already complete ({trainer.global_step} steps); its summary and "
                      "report are kept as they were")
            return finished
        summary = summarize(cfg, trainer, module, data, monitor, wall)
        if trainer.is_global_zero:
            finish(cfg, summary, mlflow)
    return summary


def read_data(cfg: Config) -> TrainingData:
    """The training data, with the settings that depend on it decided first (data.image_size)
    or after (data-aware defaults: adapt_to_data), each said in cfg.notes."""
    size_from_data(cfg)  # before the data is decoded at that size
    data = build_data(cfg)
    adapt_to_data(cfg, data.images, looks_grayscale(data.loader.dataset, cfg.data.channels))
    return data


def plan_line(cfg: Config, data: TrainingData) -> str:
    """One line said at the start: images, size, steps, global batch, learning rate, precision."""
    t, o = cfg.train, cfg.optim
    world = int(os.environ.get("WORLD_SIZE", t.devices * t.num_nodes))
    per_epoch = math.ceil(data.images // world // t.batch_size / t.accumulate)
    batch = t.batch_size * world * t.accumulate
    return (f"plan: {data.images} training images at {cfg.data.image_size} px, {t.epochs} epochs x {per_epoch} steps = "
            f"{t.epochs * per_epoch} steps of {batch} images; {o.name} lr {scaled_lr(o.base_lr, batch):.4g} "
            f"({o.base_lr:g} x {batch}/256); {describe_precision(resolve_precision(t.precision, t.accelerator))}")


def plan(cfg: Config) -> list[str]:
    """What `byol pretrain --print-config` says after the settings: the data-aware decisions and
    the plan line. Reads the data; writes nothing."""
    data = read_data(cfg)
    return [*cfg.notes, plan_line(cfg, data)]


def finished_summary(out: Path) -> dict | None:
    """The summary.json of a run that finished (written only then), or None."""
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def closing_process_group():
    """Destroys the process group that Lightning's DDP opens inside the block when the block ends;
    one the caller opened before stays. A process that exits with a gloo group open can abort at
    interpreter shutdown ("terminate called without an active exception", pytorch/pytorch#190489)."""
    def active() -> bool:
        return torch.distributed.is_available() and torch.distributed.is_initialized()

    before = active()
    try:
        yield
    finally:
        if active() and not before:
            torch.distributed.destroy_process_group()


def check_start(out: Path, resume: bool) -> Path:
    """The checkpoint path; refuses a run over an existing one without --resume, a --resume with
    nothing to resume, and an output folder that cannot be written."""
    last = out / "checkpoints" / "last.ckpt"
    if last.exists() and not resume:
        raise ConfigError(f"{out} already holds a checkpoint ({last}); pass --resume to continue it, "
                          "or choose another train.out_dir")
    if resume and not last.exists():
        raise ConfigError(f"--resume: no checkpoint at {last}")
    check_writable(out, "train.out_dir")
    return last


def standard_callbacks(cfg: Config, monitor) -> list:
    """The kNN monitor (when there are labels), atomic checkpoints and the progress bar."""
    from byol.training.callbacks import AtomicCheckpoint, StopOnSignal

    t = cfg.train
    callbacks = [] if monitor is None else [monitor]
    checkpoint = AtomicCheckpoint(Path(t.out_dir) / "checkpoints", t.checkpoint_every, t.checkpoint_every_steps,
                                  t.keep_checkpoints)
    callbacks += [checkpoint, StopOnSignal(checkpoint)]
    if progress_bar_wanted(cfg):  # refreshing reads the loss: once per log interval
        callbacks.append(progress_bar(t.log_every))
    elif cfg.log.progress:  # a file (nohup, SLURM): a bar would show nothing until the end
        from byol.training.callbacks import PlainProgress

        callbacks.append(PlainProgress(cfg.log.progress_every))
    return callbacks


def make_loggers(cfg: Config, out: Path, resume: bool) -> tuple[list, object]:
    """(the loggers log.* asks for, the MLflow logger or None)."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = []
    if cfg.log.csv:  # a resumed run writes next to the first one's log, never over it
        n = len(list(out.glob("csv*")))
        loggers.append(CSVLogger(str(out), name="", version="csv" if not resume or n == 0 else f"csv-resume{n}"))
    if cfg.log.tensorboard:
        loggers.append(TensorBoardLogger(str(out), name="", version="tensorboard", default_hp_metric=False))
    mlflow = mlflow_logger(cfg) if cfg.log.mlflow_uri else None
    if mlflow is not None:
        loggers.append(mlflow)
    return loggers, mlflow


def make_trainer(cfg: Config, callbacks: list, loggers: list):
    """A Lightning Trainer for cfg.train: devices and strategy, precision, accumulation."""
    import lightning as L

    from byol.training.callbacks import LocalCheckpointIO

    t = cfg.train
    quiet_lightning()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        return L.Trainer(
            max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
            strategy=strategy(cfg), sync_batchnorm=sync_batchnorm(cfg),
            use_distributed_sampler=False,  # ShardedSampler splits the data across ranks itself
            precision=resolve_precision(t.precision, t.accelerator),
            accumulate_grad_batches=t.accumulate, callbacks=callbacks, logger=loggers or False,
            log_every_n_steps=t.log_every, enable_checkpointing=False, enable_model_summary=False,
            enable_progress_bar=progress_bar_wanted(cfg), num_sanity_val_steps=0, default_root_dir=t.out_dir,
            plugins=[LocalCheckpointIO()],
        )


def fit(trainer, module, loader, checkpoint: Path | None) -> float:
    """trainer.fit (from `checkpoint` when resuming); returns the seconds it took. A failed data
    worker ends in one line that says the checkpoint is intact."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from byol.training.callbacks import Interrupted, StopOnSignal

    start = time.time()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*IterableDataset. has .__len__. defined.*")  # ShardStream splits per worker
        warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")  # skip_nonfinite says it itself
        try:
            trainer.fit(module, loader, ckpt_path=str(checkpoint) if checkpoint else None, weights_only=True)
        except SIGTERMException:  # Lightning's stop after a step on SIGTERM (and SIGINT, see StopOnSignal)
            stopper = next((c for c in trainer.callbacks if isinstance(c, StopOnSignal)), None)
            if stopper is None:
                raise Interrupted("stopped by SIGTERM", 15) from None
            raise stopper.stop(trainer) from None
        except RuntimeError as e:
            if "DataLoader worker" not in str(e):
                raise
            last = Path(module.cfg.train.out_dir) / "checkpoints" / "last.ckpt"
            kept = (f"the last checkpoint, {last}, is intact: fix the cause (memory? a bad file?) and resume with "
                    "--resume" if last.exists() else "no checkpoint had been written yet: fix the cause (memory? "
                    "a bad file?) and run again")
            raise DataError(f"a data-loading worker failed ({str(e).splitlines()[0]}). Training stopped; {kept}, "
                            "or set data.num_workers 0 to see the error in the main process") from None
    return time.time() - start


def summarize(cfg: Config, trainer, module, data, monitor, wall: float) -> dict:
    """The run's summary.json: steps, images, wall time (every segment of a resumed run), kNN
    before and after, the collapse monitor, skipped steps and images, and the verdict."""
    from byol.training.support import TargetAgreement, WallClock

    t, out = cfg.train, Path(cfg.train.out_dir)
    clock = next(c for c in trainer.callbacks if isinstance(c, WallClock))
    agreement = next(c for c in trainer.callbacks if isinstance(c, TargetAgreement))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    summary = {
        "out_dir": str(out), "checkpoint": str(out / "checkpoints" / "last.ckpt"), "epochs": t.epochs,
        "steps": trainer.global_step, "train_images": data.images,
        "precision": str(trainer.precision),  # what ran: Lightning turns fp16 on a CPU into bf16
        # a resumed run: every segment (the earlier ones up to their last checkpoint) and their sum
        "wall_seconds": round(sum(clock.segments) + wall, 2),
        "wall_seconds_segments": [round(s, 2) for s in (*clock.segments, wall)],
        "final_loss": metrics.get("train/loss_epoch"), "skipped_steps": module.guard.skipped_steps,
        "scaler_skipped_steps": module.scaler_skipped_steps,
        "world_size": trainer.world_size, "global_rank": trainer.global_rank,
        "targets_identical_across_ranks": agreement.identical,
        "knn": monitor.history if monitor else [],
    }
    if monitor and monitor.history:
        summary["knn_untrained_top1"] = monitor.history[0]["top1"] if monitor.history[0]["epoch"] == 0 else None
        summary["knn_final_top1"] = monitor.history[-1]["top1"]
        summary["knn_test_images"] = len(monitor.test)
        summary["knn_paired"] = monitor.paired()
    std = metrics.get("train/projection_std")  # the collapse monitor's last logged value
    summary["projection_std"] = None if std is None else float(std)
    summary["projection_std_healthy"] = 1.0 / cfg.model.projection_dim ** 0.5
    summary["notes"] = list(cfg.notes)
    dataset = data.loader.dataset
    skipped = getattr(getattr(dataset, "dataset", dataset), "skipped", [])
    summary["skipped_images"], summary["skipped_image_paths"] = len(skipped), skipped[:1000]
    held = [] if data.test is None else data.test.skipped  # the kNN monitor's held-out images
    summary["skipped_held_out_images"], summary["skipped_held_out_paths"] = len(held), held[:1000]
    summary["verdict"] = verdict(summary, cfg)
    return summary


def finish(cfg: Config, summary: dict, mlflow) -> None:
    """On rank 0: summary.json, the verdict line, the report (which never fails the run) and the
    MLflow artifacts."""
    out = Path(summary["out_dir"])
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(summary["verdict"]["message"])
    if cfg.log.report:
        report = draw_report(out)
        if report is not None:
            summary["report"] = report
    if mlflow is not None:
        log_artifacts_to_mlflow(mlflow, out, Path(summary["checkpoint"]))


def draw_report(out: Path, timeout: float = 600.0) -> str | None:
    """report.html and its plots, drawn by `byol report` in a process of its own, so that nothing
    in plotting (a crash of native code included) can fail or hide the finished run. Returns the
    report's path, or None after one line on stderr that says why and how to draw it again."""
    import signal
    import subprocess

    try:
        proc = subprocess.run([sys.executable, "-m", "byol.cli", "report", str(out)], capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode == 0:
            return str(out / "report.html")
        if proc.returncode < 0:
            why = f"the report process died of {signal.Signals(-proc.returncode).name}"
        else:
            why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        why = f"drawing took longer than {timeout:.0f} s"
    except OSError as e:
        why = str(e)
    print(f"byol: the report could not be written ({why}); the run itself is complete. Draw it again with: "
          f"byol report {out}", file=sys.stderr)
    return None


def progress_bar_wanted(cfg: Config) -> bool:
    """A progress bar on a terminal; in a file (nohup, SLURM) it would show nothing until the end."""
    return cfg.log.progress and sys.stdout.isatty()


def progress_bar(refresh_rate: int):
    """Lightning's rich progress bar (tqdm without rich), without the logger's version number."""
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    def without_version(base):
        class Bar(base):
            def get_metrics(self, trainer, pl_module):
                metrics = super().get_metrics(trainer, pl_module)
                metrics.pop("v_num", None)
                return metrics
        return Bar

    try:
        return without_version(RichProgressBar)(refresh_rate=refresh_rate)
    except ModuleNotFoundError:
        return without_version(TQDMProgressBar)(refresh_rate=refresh_rate)


def quiet_lightning() -> None:
    """Lightning's start-up lines (hardware, precision, a tip for another product) say nothing the
    run's own summary does not; its warnings still show."""
    import logging

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def check_writable(folder: Path, key: str) -> None:
    """A one-line ConfigError unless files can be created in `folder` (or where it would be
    made); probes with a temporary file that is removed, so nothing is left behind."""
    import tempfile

    probe_dir = Path(folder)
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    try:
        fd, name = tempfile.mkstemp(dir=probe_dir, prefix=".byol-write-test-")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise ConfigError(f"{key} {str(folder)!r}: cannot write in {str(probe_dir)!r} ({e.strerror}); "
                          f"choose a writable folder with --{key}") from None


VERDICT_LEVEL = 0.05  # two-sided significance level of the paired test


def verdict(summary: dict, cfg: Config) -> dict:
    """Whether pretraining helped: the final network against the untrained one (same
    initialisation) on the same held-out images, decided by McNemar's exact test on the images
    that exactly one of the two gets right (summary["knn_paired"]), at VERDICT_LEVEL. The
    outcome is "helped", "no clear change" or "got worse"; without labels, the collapse monitor."""
    untrained, final = summary.get("knn_untrained_top1"), summary.get("knn_final_top1")
    if cfg.train.epochs == 0:
        shown = f": kNN top-1 {100 * untrained:.2f}%" if untrained is not None else ""
        return {"helped": None, "outcome": None, "message": f"Untrained network evaluated (train.epochs 0){shown}."}
    paired = summary.get("knn_paired")
    if untrained is not None and final is not None:
        gain = 100 * (final - untrained)
        figures = f"kNN top-1 {100 * untrained:.2f}% untrained -> {100 * final:.2f}% ({gain:+.2f} points"
        if not paired:
            return {"helped": None, "outcome": None, "gain_points": round(gain, 2),
                    "message": f"{figures}); no paired test was possible (the untrained network's per-image "
                               "results are missing), so no verdict."}
        worse, better = paired["untrained_only"], paired["final_only"]
        p = mcnemar_exact(worse, better)
        test = (f"{better} held-out images right only after pretraining, {worse} only before; McNemar's exact "
                f"test p = {p:.2g}")
        base = {"gain_points": round(gain, 2), "p_value": p, "level": VERDICT_LEVEL, "test": "mcnemar-exact",
                "final_only": better, "untrained_only": worse}
        hint = (f"More epochs or more images ({summary['train_images']} now) may help; gentler crops "
                f"(--augment.view1.crop_scale '[0.2, 1.0]' and the same for view2), or {other_recipe(cfg)}; "
                f"README.md, 'Recipes'.")
        if p < VERDICT_LEVEL and better > worse:
            return {**base, "helped": True, "outcome": "helped",
                    "message": f"Pretraining helped: {figures}; {test})."}
        if p < VERDICT_LEVEL:
            return {**base, "helped": False, "outcome": "got worse",
                    "message": f"Pretraining made the features worse: {figures}; {test}), so the exported "
                               f"backbone is worse than its initialisation. {hint}"}
        return {**base, "helped": False, "outcome": "no clear change",
                "message": f"No clear change from pretraining: {figures}; {test}, not below {VERDICT_LEVEL}), so "
                           f"the difference may be chance. {hint}"}
    std, healthy = summary.get("projection_std"), summary["projection_std_healthy"]
    if std is None:
        state = "not measured"
    elif std < 0.1 * healthy:
        state = f"collapsed (projection std {std:.4f}, healthy about {healthy:.4f})"
    else:
        state = f"not collapsed (projection std {std:.4f}, healthy about {healthy:.4f})"
    return {"helped": None, "outcome": None, "collapse": state,
            "message": f"No check of whether pretraining helped was possible: the kNN monitor needs labeled "
                       f"held-out images (data.val_path with class folders, or labeled training data). "
                       f"Collapse monitor: {state}."}


def other_recipe(cfg: Config) -> str:
    """The recipe a verdict suggests: cifar10 for small images unless it is in use already."""
    in_use = {Path(source).stem for source in cfg.given.values() if Path(source).parent == RECIPES_DIR}
    if cfg.data.image_size <= 64 and "cifar10" not in in_use:
        return "the recipe measured best on small images (--config cifar10)"
    return "another recipe (--config NAME)"


def distributed(cfg: Config) -> bool:
    """More than one training process: devices x nodes, or a launcher's WORLD_SIZE (torchrun, SLURM)."""
    t = cfg.train
    return t.devices * t.num_nodes > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1


def sync_batchnorm(cfg: Config) -> bool:
    """SyncBatchNorm when distributed on GPUs. PyTorch has none for CPUs: there each process
    normalises its own batch (said once)."""
    if not (cfg.train.sync_batchnorm and distributed(cfg)):
        return False
    if cfg.train.accelerator == "cpu" or not torch.cuda.is_available():
        warnings.warn("train.sync_batchnorm: PyTorch's SyncBatchNorm runs on GPUs only; on CPUs each process "
                      "normalises its own batch", stacklevel=2)
        return False
    return True


def strategy(cfg: Config):
    """DDP when distributed (gloo on CPUs, NCCL on GPUs: Lightning's choice). A hidden layer
    stops the forward early, so layers after it get no gradient: DDP must be told."""
    if not distributed(cfg):
        return "auto"
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(find_unused_parameters=cfg.model.hidden_layer is not None)


def log_artifacts_to_mlflow(logger, out: Path, checkpoint: Path) -> None:
    """The run's files as artifacts of its MLflow run: config.yaml, summary.json, knn.json, the
    report and its plots, and the exported backbone (written to the run folder first as
    backbone.safetensors)."""
    from byol.checkpoint import export_backbone

    client, run_id = logger.experiment, logger.run_id
    export_backbone(checkpoint, out / "backbone.safetensors")
    for name in ("config.yaml", "summary.json", "knn.json", "report.html", "backbone.safetensors"):
        if (out / name).exists():
            client.log_artifact(run_id, str(out / name))
    for png in sorted(out.glob("*.png")):  # beside report.html, which links them by name
        client.log_artifact(run_id, str(png))


def mlflow_logger(cfg: Config):
    from lightning.pytorch.loggers import MLFlowLogger  # the URI was checked at the start (check_tracking_uri)

    return MLFlowLogger(experiment_name=cfg.log.mlflow_experiment, tracking_uri=cfg.log.mlflow_uri,
                        run_id=cfg.log.mlflow_run_id, log_model=False)


def check_resume_config(last: Path, cfg: Config, identity: dict | None = None) -> int | None:
    """Resuming with settings that change the run (model shape, data, schedule) is refused,
    naming the keys that differ. Keys that only affect logging or speed may change, and
    train.epochs may grow: the run continues to the new end, its learning-rate and tau cosines
    stretched to it (the run's former epochs are returned; None when unchanged). Refused too: a
    different number of processes (the learning rate, the schedules' length and the data order
    depend on it), and other training data (`identity`, see data_identity): more or fewer
    images change the schedule, and the held-out split."""
    from byol.checkpoint import checkpoint_config, load_checkpoint

    ckpt = load_checkpoint(last)
    saved = checkpoint_config(ckpt)
    extra = ckpt.get("byol") or {}
    saved_world = extra.get("world_size") or len(extra.get("rng_torch") or [None])
    world = int(os.environ.get("WORLD_SIZE", cfg.train.devices * cfg.train.num_nodes))
    if world != saved_world:
        t = saved.get("train", {})
        raise ConfigError(f"cannot resume {last} with {world} training processes: it was trained with {saved_world} "
                          f"(train.devices {t.get('devices')} x train.num_nodes {t.get('num_nodes')}), and its "
                          "learning rate, schedule length and data order depend on that number. Resume with the "
                          "same train.devices and train.num_nodes, or start a new run")
    old_epochs = saved.get("train", {}).get("epochs", cfg.train.epochs)
    if cfg.train.epochs < old_epochs:
        raise ConfigError(f"cannot resume {last} with train.epochs {cfg.train.epochs}: the run was set to {old_epochs} "
                          "epochs; a resume may add epochs, never remove them (start a new run for a shorter one)")
    now, defaults = to_dict(cfg), to_dict(Config())
    free = {"log", "train.out_dir", "train.epochs", "train.knn_every", "train.log_every", "train.threads", "data.num_workers",
            "train.checkpoint_every", "train.checkpoint_every_steps", "train.keep_checkpoints", "train.compile",
            "train.skip_nonfinite", "train.devices", "train.num_nodes", "train.accelerator"}
    diffs = []
    for section, values in now.items():
        if section in free:
            continue
        for key, value in values.items():
            name = f"{section}.{key}"
            if name in free:
                continue
            old = saved.get(section, {}).get(key, defaults[section].get(key))  # a key added since: its default
            if old != value:
                diffs.append(f"{name}: {old!r} -> {value!r}")
    if diffs:
        preset = (f" (the epoch preset for {cfg.train.epochs} epochs sets some of these: give the run's values on the "
                  "command line to keep them)" if cfg.train.epochs != old_epochs and cfg.epoch_presets else "")
        raise ConfigError(f"cannot resume {last}: the config differs from the checkpoint's in "
                          f"{'; '.join(diffs)}{preset}")
    was = extra.get("data")
    if was and identity and was != identity:
        where = cfg.data.path
        change = (f"it now has {identity['images']} training images, the run had {was['images']}"
                  if was["images"] != identity["images"] else
                  f"it has the same number of training images ({was['images']}), but not the same files")
        raise ConfigError(f"cannot resume {last}: the training data in {where!r} changed since the run started "
                          f"({change}: files added, removed or renamed, or another held-out split from "
                          "train.knn_every, data.val_fraction or data.val_path). Resume with the data and "
                          "settings it started with, or start a new run")
    return old_epochs if cfg.train.epochs != old_epochs else None
