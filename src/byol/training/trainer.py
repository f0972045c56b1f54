"""The Lightning Trainer of a run, assembled from its plan: devices and strategy (DDP,
SyncBatchNorm), precision (as the plan decided it), loggers, callbacks and the progress display;
and `fit`, which runs it."""
from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from byol.config import Config
from byol.data.listing import DataError
from byol.training.data import TrainingData
from byol.training.plan import Plan
from byol.wording import option


def strategy(plan: Plan):
    """DDP when more than one process trains (gloo on CPUs, NCCL on GPUs: Lightning's choice). A
    hidden layer stops the forward early, so layers after it get no gradient: DDP must be told.
    PyTorch has no SyncBatchNorm for CPUs: there each process normalises its own batch (said once)."""
    if plan.world_size == 1:
        return "auto"
    if plan.cfg.train.sync_batchnorm and not plan.sync_batchnorm:
        warnings.warn("train.sync_batchnorm: PyTorch's SyncBatchNorm runs on GPUs only; on CPUs each process "
                      "normalises its own batch", stacklevel=2)
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(find_unused_parameters=plan.cfg.model.hidden_layer is not None)


def build_trainer(plan: Plan, data: TrainingData, callbacks: list, resume: bool) -> tuple[object, object]:
    """(the Trainer with the standard callbacks, the user's `callbacks` and the loggers; the MLflow
    logger or None)."""
    cfg = plan.cfg
    loggers, mlflow = make_loggers(cfg, Path(cfg.train.out_dir), resume)
    return make_trainer(plan, standard_callbacks(cfg, data) + list(callbacks), loggers), mlflow


def standard_callbacks(cfg: Config, data: TrainingData) -> list:
    """The kNN monitor on the data's labeled bank and held-out images (when it has them), atomic
    checkpoints and the progress display."""
    from byol.training.monitors import KNNMonitor, progress_display
    from byol.training.saving import AtomicCheckpoint, StopOnSignal

    t = cfg.train
    monitor = None if data.bank is None else KNNMonitor(data.bank, data.test, t.knn_every, t.knn_k,
                                                         t.knn_temperature, Path(t.out_dir) / "knn.json")
    display = progress_display(cfg.log.progress, cfg.log.progress_every, t.log_every)
    checkpoint = AtomicCheckpoint(Path(t.out_dir) / "checkpoints", t.checkpoint_every, t.checkpoint_every_steps,
                                  t.keep_checkpoints)
    return [c for c in (monitor, checkpoint, StopOnSignal(checkpoint), display) if c is not None]


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


def mlflow_logger(cfg: Config):
    from lightning.pytorch.loggers import (
        MLFlowLogger,  # the URI was checked at the start (check_tracking_uri)
    )

    return MLFlowLogger(experiment_name=cfg.log.mlflow_experiment, tracking_uri=cfg.log.mlflow_uri,
                        run_id=cfg.log.mlflow_run_id, log_model=False)


def make_trainer(plan: Plan, callbacks: list, loggers: list):
    """A Lightning Trainer for the plan: cfg.train's devices, the plan's strategy and precision,
    accumulation."""
    import lightning as L
    from lightning.pytorch.callbacks import ProgressBar

    from byol.training.saving import LocalCheckpointIO

    cfg = plan.cfg
    t = cfg.train
    quiet_lightning()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        return L.Trainer(
            max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
            strategy=strategy(plan), sync_batchnorm=plan.sync_batchnorm,
            use_distributed_sampler=False,  # ShardedSampler splits the data across ranks itself
            precision=plan.precision,
            accumulate_grad_batches=t.accumulate, callbacks=callbacks, logger=loggers or False,
            log_every_n_steps=t.log_every, enable_checkpointing=False, enable_model_summary=False,
            enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks), num_sanity_val_steps=0,
            default_root_dir=t.out_dir,
            plugins=[LocalCheckpointIO()],
        )


def quiet_lightning() -> None:
    """Lightning's start-up lines (hardware, precision, a tip for another product) say nothing the
    run's own summary does not; its warnings still show."""
    import logging

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


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


def fit(trainer, module, loader, checkpoint: Path | None) -> float:
    """trainer.fit (from `checkpoint` when resuming); returns the seconds it took. A failed data
    worker ends in one line that says the checkpoint is intact."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from byol.training.saving import Interrupted, StopOnSignal

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
                    f"{option('resume')}" if last.exists() else "no checkpoint had been written yet: fix the cause (memory? "
                    "a bad file?) and run again")
            raise DataError(f"a data-loading worker failed ({str(e).splitlines()[0]}). Training stopped; {kept}, "
                            "or set data.num_workers 0 to see the error in the main process") from None
    return time.time() - start
