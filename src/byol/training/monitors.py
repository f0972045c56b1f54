"""What a run measures and says while it trains:

    KNNMonitor        kNN accuracy of the online backbone on held-out labeled images
    PlainProgress     progress as plain lines when the output is a file (nohup, SLURM)
    WallClock         seconds of each training segment (a resumed run has several)
    Throughput        images/s over a sliding window of steps
    TargetAgreement   at the end of a distributed run: are the EMA targets identical on all ranks?
"""
from __future__ import annotations

import collections
import json
import math
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from byol.checkpoint import atomic_write_text
from byol.core.model import feature_extractor
from byol.data.batch import as_batch
from byol.evaluation.protocols import extract_features, knn_evaluate
from byol.evaluation.report import save_embeddings
from byol.progress import Progress


class KNNMonitor(L.Callback):
    """kNN accuracy of the online backbone on held-out labeled images, every N epochs.

    Also runs once before the first step, which gives the untrained network's accuracy
    with the same initialisation. Results go to the loggers and `history`; whether each
    held-out image was right is kept for the untrained network and for the latest evaluation
    (`correct`), for the paired test of the verdict.
    """

    def __init__(self, bank, test, every_n_epochs: int, k: int = 200, temperature: float = 0.1,
                 out_file: str | Path | None = None):
        self.bank, self.test = bank, test
        self.every, self.k, self.temperature = every_n_epochs, k, temperature
        self.history: list[dict] = []
        self.correct: dict[str, torch.Tensor] = {}  # "untrained" (epoch 0) and "latest": bool per test image
        self.out_file = Path(out_file) if out_file else None

    def evaluate(self, pl_module) -> dict:
        cfg = pl_module.cfg
        kw = dict(mean=cfg.augment.mean, std=cfg.augment.std, image_size=cfg.data.image_size,
                  device=pl_module.device, channels_last=cfg.train.channels_last, keep_on_device=True,
                  crop=cfg.data.eval_crop, pixels=pl_module.pixels)
        dtype = torch.bfloat16 if "bf16" in str(pl_module.trainer.precision) else None
        online = pl_module.model.online
        net = feature_extractor(online.net, online.hidden_layer, online.token_pool)
        with torch.autocast(pl_module.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            bank = self.features(pl_module, net, self.bank.images, kw)
            test = self.features(pl_module, net, self.test.images, kw)
        self.test_features = test
        dev = bank.device
        return knn_evaluate(bank, self.bank.labels.to(dev), test, self.test.labels.to(dev), self.k, self.temperature)

    @staticmethod
    def features(pl_module, net, images: torch.Tensor, kw: dict) -> torch.Tensor:
        """Features of all images; under DDP each rank computes a slice and they are gathered,
        so every rank holds the same features as a one-process run."""
        size, rank = pl_module.trainer.world_size, pl_module.global_rank
        if size == 1:
            return extract_features(net, images, **kw)
        per = math.ceil(len(images) / size)
        mine = images[rank * per:(rank + 1) * per]
        f = extract_features(net, mine if len(mine) else images[:1], **kw)[:len(mine)]
        padded = torch.zeros(per, f.shape[1], dtype=f.dtype, device=f.device)
        padded[:len(f)] = f
        return pl_module.all_gather(padded).reshape(size * per, -1)[:len(images)]

    def record(self, trainer, pl_module, epoch: int) -> None:
        result, correct = self.evaluate(pl_module)
        self.correct["latest"] = correct
        if epoch == 0:
            self.correct["untrained"] = correct
        entry = {"epoch": epoch, "step": trainer.global_step, **result}
        self.history.append(entry)
        for logger in trainer.loggers:
            logger.log_metrics({"knn/top1": result["top1"], "knn/top5": result["top5"]}, step=trainer.global_step)
        if trainer.is_global_zero:
            print(f"kNN after {epoch} epochs: top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%")
            if self.out_file:
                atomic_write_text(self.out_file, json.dumps(self.history, indent=1))
                save_embeddings(self.test_features, self.test.labels, self.test.classes,
                                self.out_file.parent / "embeddings.npz")

    def on_train_start(self, trainer, pl_module):
        if trainer.global_step == 0:
            self.record(trainer, pl_module, 0)

    def on_fit_end(self, trainer, pl_module):
        if trainer.max_epochs == 0 and not self.history:  # train.epochs 0: the untrained network only
            self.record(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch + 1
        if epoch % self.every == 0 or epoch == trainer.max_epochs:
            self.record(trainer, pl_module, epoch)

    def state_dict(self):
        return {"history": self.history, "correct": dict(self.correct)}

    def load_state_dict(self, state):
        self.history = list(state.get("history", []))
        self.correct = dict(state.get("correct", {}))


def progress_display(wanted: bool, every: float, refresh_rate: int) -> L.Callback | None:
    """How a run shows its progress (log.progress): on a terminal Lightning's rich progress bar
    (tqdm's without rich), refreshed once per log interval (refreshing reads the loss), without
    the logger's version number; in a file (nohup, SLURM), where a bar would show nothing until
    the end, PlainProgress lines every `every` seconds; None when not wanted."""
    if not wanted:
        return None
    if not sys.stdout.isatty():
        return PlainProgress(every)
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


class PlainProgress(L.Callback):
    """Progress as plain lines when the output is a file (nohup, SLURM): every `every` seconds
    the epoch, step, loss, images/s since the last line and the whole run's ETA, on rank 0."""

    def __init__(self, every: float = 30.0):
        self.every = every
        self.progress: Progress | None = None
        self.images = 0

    def on_train_start(self, trainer, pl_module):
        self.progress = Progress(pl_module.total_steps, trainer.global_step, self.every)
        self.images, self.since = 0, time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(as_batch(batch)) * trainer.world_size
        if not (trainer.is_global_zero and self.progress.due()):
            return
        now = time.monotonic()
        loss = trainer.callback_metrics.get("train/loss_step")
        shown = f"  loss {float(loss):.4f}" if loss is not None else ""
        step, total = trainer.global_step, self.progress.total
        self.progress.say(step, f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  step {step}/{total}"
                                f"{shown}  {self.images / max(now - self.since, 1e-9):.1f} img/s")
        self.images, self.since = 0, now


class WallClock(L.Callback):
    """`segments`: seconds of the earlier training segments (from the checkpoint: each up to its
    last save); `seconds()`: of this one so far."""

    def __init__(self):
        self.segments: list[float] = []
        self._start = time.time()

    def seconds(self) -> float:
        return time.time() - self._start

    def on_fit_start(self, trainer, pl_module):
        self._start = time.time()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint.setdefault("byol", {})["wall_segments"] = [*self.segments, self.seconds()]

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.segments = [float(s) for s in (checkpoint.get("byol") or {}).get("wall_segments", [])]


THROUGHPUT_WINDOW = 20  # steps


class Throughput(L.Callback):
    """Every log_every steps, train/images_per_sec over the last THROUGHPUT_WINDOW steps: a
    sliding window of step start times, so epoch ends (checkpoints, kNN) do not skew it.
    Also the time the steps waited for data: from the end of one step to the start of the
    next within an epoch (the loader's next batch), against the time the steps took;
    `waited_seconds` and `step_seconds` for the summary, train/data_wait_share in the logs."""

    def __init__(self, log_every: int):
        self.log_every = log_every
        self.starts: collections.deque = collections.deque(maxlen=THROUGHPUT_WINDOW + 1)
        self.waited_seconds = self.step_seconds = 0.0
        self.step_start = self.step_end = None

    def on_train_epoch_start(self, trainer, pl_module):
        self.starts.clear()  # the gap of an epoch's end is not a step
        self.step_end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.step_start = time.perf_counter()
        self.starts.append(self.step_start)
        if self.step_end is not None:
            self.waited_seconds += self.step_start - self.step_end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.step_end = time.perf_counter()
        self.step_seconds += self.step_end - self.step_start
        t = self.starts
        if batch_idx % self.log_every == 0 and len(t) >= 2 and t[-1] > t[0]:
            ips = (len(t) - 1) * len(batch) * trainer.world_size / (t[-1] - t[0])
            pl_module.log("train/images_per_sec", ips, prog_bar=True, on_step=True, on_epoch=False,
                          batch_size=len(batch))
            pl_module.log("train/data_wait_share", self.wait_share(), on_step=True, on_epoch=False,
                          batch_size=len(batch))

    def wait_share(self) -> float:
        """The share of the training time (steps + waits) spent waiting for data."""
        total = self.waited_seconds + self.step_seconds
        return self.waited_seconds / total if total > 0 else 0.0


class TargetAgreement(L.Callback):
    """`identical`: after a distributed run, whether every rank holds the same EMA target weights
    (compared by per-tensor fingerprints); None for one process. The batch-norm running
    statistics are compared apart: without SyncBatchNorm (CPUs) each rank keeps its own batches'
    statistics by design, so only with SyncBatchNorm does a difference there say anything."""

    def __init__(self):
        self.identical: bool | None = None

    def on_train_end(self, trainer, pl_module):
        if trainer.world_size > 1:
            target = pl_module.model.target
            prints = pl_module.all_gather(fingerprint(target.parameters()))
            self.identical = bool((prints == prints[0]).all())
            if not self.identical:
                warnings.warn("the EMA target's weights differ between ranks at the end of training", stacklevel=2)
            if any(isinstance(m, torch.nn.SyncBatchNorm) for m in pl_module.modules()):
                stats = pl_module.all_gather(fingerprint(target.buffers()))
                if not bool((stats == stats[0]).all()):
                    warnings.warn("the EMA target's batch-norm statistics differ between ranks although "
                                  "SyncBatchNorm is on", stacklevel=2)


@torch.no_grad()
def fingerprint(tensors) -> torch.Tensor:
    """Per tensor: sum, sum of squares and a position-weighted sum (float64); (0, 3) for none."""
    rows = []
    for t in tensors:
        x = t.detach().double().flatten()
        position = torch.arange(1, len(x) + 1, device=x.device, dtype=x.dtype)
        rows.append(torch.stack([x.sum(), x.square().sum(), (x * position).sum()]))
    return torch.stack(rows) if rows else torch.zeros(0, 3, dtype=torch.float64)
