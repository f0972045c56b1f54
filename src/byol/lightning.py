"""BYOL as a LightningModule, and the callbacks the trainer uses.

    module = BYOLModule(net, config)          # config: byol.config.Config or a dict
    pl.Trainer(max_epochs=...).fit(module, loader)
    net.load_state_dict(module.backbone.state_dict())

Batches are (uint8 images, labels), (uint8 images, labels, aspect ratios) of whole images
stored squashed, or (uint8 frames, uint8 partner frames, labels), augmented here on the
training device; or (view1, view2, labels) already augmented by Dataset workers.
"""
from __future__ import annotations

import collections
import json
import math
import os
import random
import shutil
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn

from . import __version__
from .augment import BatchAugment
from .backbones import build_backbone
from .checkpoint import CheckpointError, atomic_replace
from .config import Config, from_dict, to_dict
from .evaluate import extract_features, knn_accuracy
from .model import BYOL, feature_extractor
from .report import save_embeddings
from .optim import build_optimizer, build_scheduler, scaled_lr


THROUGHPUT_WINDOW = 20  # steps
SCHEDULE_POINTS = 500  # lr and tau are logged about this many times per run, whatever its length


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops and its last checkpoint is kept."""


class BYOLModule(L.LightningModule):
    def __init__(self, net: nn.Module | None = None, config: Config | dict | None = None):
        super().__init__()
        cfg = config if isinstance(config, Config) else from_dict(config)
        self.cfg = cfg
        self.save_hyperparameters({"config": to_dict(cfg)})
        if net is None:
            net = build_backbone(cfg.model.backbone, **cfg.model.backbone_args)
        m = cfg.model
        self.model = BYOL(net, hidden_layer=m.hidden_layer, image_size=cfg.data.image_size,
                          in_channels=cfg.data.channels, projection_dim=m.projection_dim,
                          projection_hidden_dim=m.projection_hidden_dim,
                          prediction_hidden_dim=m.prediction_hidden_dim, tau_base=m.tau_base, tau_final=m.tau_final,
                          concat_views=m.concat_views, head_batchnorm=m.head_batchnorm)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.augment = BatchAugment(cfg.augment, channels_last=cfg.train.channels_last)
        self._resident: torch.Tensor | None = None  # uint8 images kept on the device
        self._compiled = None  # torch.compile'd forward, False once compilation failed
        self._step_times: collections.deque = collections.deque(maxlen=THROUGHPUT_WINDOW + 1)
        self.skipped_steps = 0  # train.skip_nonfinite
        self.scaler_skipped_steps = 0  # fp16: steps the gradient scaler skipped (overflow)
        self._skipping = False
        self.check_every_step: bool | None = None  # None: on the CPU (free there), not on a GPU
        self._nonfinite: torch.Tensor | None = None  # any non-finite loss since the last check (on the device)
        self._settled_step = 0
        self.targets_identical: bool | None = None  # checked across ranks at the end of a DDP run
        self.wall_segments: list[float] = []  # seconds of earlier training segments (before --resume)
        self._fit_start = time.time()
        # The train loader, when the caller knows it (byol.train does): asking Lightning for
        # estimated_stepping_batches in configure_optimizers would set up the data before a
        # checkpoint's loader position is restored, and a mid-epoch resume would restart the epoch.
        self.train_loader = None

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.embed(images)

    # -- training -----------------------------------------------------------------
    def keep_on_device(self, images: torch.Tensor) -> None:
        """Hold every training image (uint8) on the training device; batches are then indices."""
        self._resident = images

    def segment_seconds(self) -> float:
        """Seconds since this training segment (this fit) started."""
        return time.time() - self._fit_start

    def on_fit_start(self):
        self._fit_start = time.time()
        if self._resident is not None:
            self._resident = self._resident.to(self.device)
        if self.trainer.world_size > 1 and self.trainer.ckpt_path is None:
            # every rank starts from the same seed (identical initial weights); its augmentations
            # must not repeat the other ranks' draws, so each rank's stream is reseeded here
            torch.manual_seed(self.cfg.train.seed * 1_000_003 + self.global_rank + 1)

    def views(self, batch):
        if len(batch) == 3 and batch[2].is_floating_point():  # whole squashed images + aspect ratios
            return self.augment(batch[0], aspect=batch[2])
        if len(batch) == 3 and batch[0].dtype == torch.uint8:  # raw pairs (video frames)
            return self.augment(batch[0], batch[1])
        if len(batch) == 3:  # augmented in the Dataset workers
            return batch[0], batch[1]
        if len(batch) == 1:  # indices into the device-resident images
            return self.augment(self._resident[batch[0].to(self._resident.device)])
        return self.augment(batch[0])

    def loss(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """The BYOL loss, through torch.compile when train.compile is set (eager if that fails)."""
        if self.cfg.train.compile and self._compiled is None:
            try:
                self._compiled = torch.compile(self.model.forward)
                return self._compiled(view1, view2)
            except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              "training continues without compilation", stacklevel=2)
                self._compiled = False
        if self._compiled:
            return self._compiled(view1, view2)
        return self.model(view1, view2)

    def training_step(self, batch, batch_idx):
        view1, view2 = self.views(batch)
        snapshot = [b.clone() for b in self.model.buffers()] if self.cfg.train.skip_nonfinite else None
        loss = self.loss(view1, view2)
        if not self.check_finite(loss, batch_idx, snapshot):
            return None  # Lightning skips backward; with no gradients the optimizer changes nothing
        self._step_times.append(time.perf_counter())
        if batch_idx % self.cfg.train.log_every == 0:
            self.log_progress(view1.shape[0])
        # the loss of the global batch (mean over ranks), as a one-process run would log it
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=self.trainer.world_size > 1)
        return loss

    def check_finite(self, loss: torch.Tensor, batch_idx: int, snapshot: list | None) -> bool:
        """A NaN/inf loss stops the run (NonFiniteLossError) — or, with train.skip_nonfinite
        (`snapshot`: the buffers before the forward), skips the step: returns False after
        putting back the batch-norm statistics that the bad forward changed."""
        if snapshot is not None:  # checked every step (one sync)
            if self.all_finite(loss):
                return True
            torch._foreach_copy_(list(self.model.buffers()), snapshot)
            self.skipped_steps += 1
            warnings.warn(f"skipping step {self.trainer.global_step}: the loss is {loss.item()} "
                          f"({self.skipped_steps} skipped so far)", stacklevel=2)
            self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)
            self._skipping = True
            return False
        # on the CPU every step (free); on a GPU at log steps only, to keep the step sync-free: in
        # between, a device flag remembers any non-finite loss until the next check (settle_nonfinite)
        if self.check_every_step if self.check_every_step is not None else self.device.type == "cpu":
            if not self.all_finite(loss):
                self._raise_nonfinite(f"the loss is {loss.item()} at step {self.trainer.global_step}")
            return True
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        if batch_idx % self.cfg.train.log_every == 0:
            self.settle_nonfinite()
        return True

    def settle_nonfinite(self) -> None:
        """Raise NonFiniteLossError if any loss since the last check was NaN/inf (one sync); called
        at log steps and before every checkpoint write, so no checkpoint holds a non-finite state."""
        if self._nonfinite is None:
            return
        bad = self._nonfinite.float()
        if self.trainer.world_size > 1:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        self._nonfinite = None
        if bad.item():
            self._raise_nonfinite(f"the loss became NaN or infinite after step {self._settled_step} and by step "
                                  f"{self.trainer.global_step}")
        self._settled_step = self.trainer.global_step

    def _raise_nonfinite(self, what: str):
        raise NonFiniteLossError(
            f"{what} (epoch {self.current_epoch}); stopped. The last checkpoint in {self.cfg.train.out_dir}/"
            "checkpoints is from before it. Lower optim.base_lr, or check the data (or pass "
            "--train.skip_nonfinite true).")

    def log_progress(self, batch_size: int) -> None:
        """Every log_every steps: images/s over the last THROUGHPUT_WINDOW steps (a sliding
        window of step start times, so epoch boundaries and the kNN monitor do not skew it)
        and the collapse monitor."""
        times = self._step_times
        if len(times) >= 2 and times[-1] > times[0]:
            ips = (len(times) - 1) * batch_size * self.trainer.world_size / (times[-1] - times[0])
            self.log("train/images_per_sec", ips, prog_bar=True, on_step=True, on_epoch=False)
        d = self.model.projection_std
        if d is not None:
            self.log("train/projection_std", d, on_step=True, on_epoch=False)
            self.log("train/projection_std_healthy", 1.0 / self.model.online.projector.out_dim ** 0.5,
                     on_step=True, on_epoch=False)

    def on_train_epoch_start(self):
        self._step_times.clear()  # the gap of an epoch's end (checkpoint, kNN) is not a step

    def all_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank (all ranks must skip a step together)."""
        ok = torch.isfinite(loss.detach()).float()
        if self.trainer.world_size > 1:
            torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
        return bool(ok.item())

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)  # fp16 loss scaling (GPUs only)
        scale = scaler.get_scale() if scaler is not None else None  # one sync per step, fp16 only
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self._skipping:  # a skipped non-finite step: it counts, but the target stays as it is
            self._skipping = False
            return
        if scale is not None and scaler.get_scale() < scale:
            # the scaler found inf/NaN gradients, skipped the optimizer step and lowered its
            # scale: no real step happened, so the target does not move either
            self.scaler_skipped_steps += 1
            return
        # after the optimizer step, and only on steps that really stepped (accumulation)
        step = self.trainer.global_step
        tau = self.model.update_target(step, self.total_steps)
        if step % max(1, self.total_steps // SCHEDULE_POINTS) == 0 or step == self.total_steps:
            # host floats, no device sync: written straight to the loggers at this fine interval
            # (self.log would hold them until the next log_every step)
            for logger in self.trainer.loggers:
                logger.log_metrics({"train/tau": tau, "train/lr": optimizer.param_groups[0]["lr"]}, step=step)

    @torch.no_grad()
    def target_fingerprint(self) -> torch.Tensor:
        """Per tensor of the target: sum, sum of squares and a position-weighted sum (float64).
        Equal on every rank iff the EMA targets agree (checked at the end of a DDP run)."""
        rows = []
        for t in [*self.model.target.parameters(), *self.model.target.buffers()]:
            x = t.detach().double().flatten()
            rows.append(torch.stack([x.sum(), x.square().sum(), (x * torch.arange(1, len(x) + 1, device=x.device,
                                                                                 dtype=x.dtype)).sum()]))
        return torch.stack(rows)

    def on_train_end(self):
        if self.trainer.world_size > 1:
            prints = self.all_gather(self.target_fingerprint())
            self.targets_identical = bool((prints == prints[0]).all())
            if not self.targets_identical:
                warnings.warn("the EMA target differs between ranks at the end of training", stacklevel=2)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run (the length of the tau and LR schedules)."""
        if self.train_loader is not None:  # without asking Lightning to load data early (see below)
            acc = self.trainer.accumulate_grad_batches
            return self.trainer.max_epochs * math.ceil(len(self.train_loader) / acc)
        return int(self.trainer.estimated_stepping_batches)

    def global_batch(self) -> int:
        return self.cfg.train.batch_size * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def configure_optimizers(self):
        o = self.cfg.optim
        lr = scaled_lr(o.base_lr, self.global_batch())
        trainable = nn.ModuleList([self.model.online, self.model.predictor])
        optimizer = build_optimizer(trainable, o.name, lr, o.weight_decay, o.momentum, o.trust_coefficient,
                                    o.clip_lr, o.exclude_bias_and_norm, {self.model.predictor: o.predictor_lr_scale})
        steps_per_epoch = max(1, self.total_steps // max(1, self.trainer.max_epochs))
        scheduler = build_scheduler(optimizer, int(o.warmup_epochs * steps_per_epoch), self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- checkpoint extras ----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """RNG states go in the checkpoint: the augmentations of a resumed run continue exactly.
        Under DDP every rank saves its own (gathered; only rank 0 writes the file)."""
        np_state = np.random.get_state()
        cuda = self.device.type == "cuda"
        checkpoint["byol"] = {
            "version": __version__,
            "rng_torch": self._per_rank(torch.get_rng_state()),
            "rng_cuda": self._per_rank(torch.cuda.get_rng_state()) if cuda else [],
            "rng_python": random.getstate(),
            "rng_numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "wall_segments": [*self.wall_segments, self.segment_seconds()],  # this one, up to this save
            "world_size": self.trainer.world_size,
        }

    def _mine(self, states) -> torch.Tensor:
        """This rank's saved state (rank 0's when the number of ranks changed, or an old checkpoint)."""
        if isinstance(states, torch.Tensor):
            return states
        size = self._trainer.world_size if self._trainer is not None else 1
        return states[self.global_rank] if len(states) == size else states[0]

    def _per_rank(self, state: torch.Tensor) -> list[torch.Tensor]:
        if self.trainer.world_size == 1:
            return [state]
        return list(self.all_gather(state.to(self.device)).cpu().unbind())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("byol")
        if not extra:
            return
        self.wall_segments = [float(s) for s in extra.get("wall_segments", [])]
        mine = self._mine
        torch.set_rng_state(mine(extra["rng_torch"]))
        if extra["rng_cuda"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(mine(extra["rng_cuda"]))
        random.setstate(_tuples(extra["rng_python"]))
        n = extra["rng_numpy"]
        np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (full disk, permissions); the previous one is intact."""


class AtomicCheckpoint(L.Callback):
    """Saves `last.ckpt` every N epochs, every M optimizer steps (mid-epoch) and at the end.

    Each write goes to a temporary file that is then renamed over `last.ckpt`, so a crash or
    a full disk mid-write leaves the previous checkpoint intact. With keep_last K > 0 the
    last K checkpoints also stay as step-NNNNNNNN.ckpt (hard links: no extra space).
    Before saving, the train loader's position is marked (ResumableLoader) so that a resumed
    run continues with the very batch that comes next.
    """

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1, every_n_steps: int = 0, keep_last: int = 0):
        self.dirpath = Path(dirpath)
        self.every, self.every_steps, self.keep_last = every_n_epochs, every_n_steps, keep_last
        self._saved_step = -1

    @property
    def last(self) -> Path:
        return self.dirpath / "last.ckpt"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # at the start of the next batch the previous step is complete (scheduler stepped too)
        step = trainer.global_step
        accumulating = batch_idx % trainer.accumulate_grad_batches != 0
        if self.every_steps and step and step % self.every_steps == 0 and step != self._saved_step \
                and not accumulating:
            self.save(trainer, batches_done=batch_idx)

    def on_train_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch + 1
        if epoch % self.every == 0 or epoch == trainer.max_epochs:
            self.save(trainer, batches_done=trainer.num_training_batches)

    def on_fit_end(self, trainer, pl_module):
        if trainer.max_epochs == 0 and not self.last.exists():  # train.epochs 0: the initial weights
            self.save(trainer, batches_done=0)

    def save(self, trainer, batches_done: int) -> None:
        if isinstance(trainer.lightning_module, BYOLModule):
            trainer.lightning_module.settle_nonfinite()  # never a checkpoint of a non-finite state
        loader = trainer.train_dataloader
        if hasattr(loader, "mark"):
            loader.mark(trainer.current_epoch, batches_done)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        tmp = self.dirpath / ".last.ckpt.tmp"
        try:
            trainer.save_checkpoint(tmp, weights_only=False)
            if trainer.is_global_zero:
                atomic_replace(tmp, self.last)
                self._keep(trainer.global_step)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise CheckpointWriteError(
                f"could not write checkpoint {self.last} at step {trainer.global_step} ({e}); training stopped. "
                "The previous checkpoint, if any, is intact: free space and resume with --resume") from None
        self._saved_step = trainer.global_step

    def _keep(self, step: int) -> None:
        if not self.keep_last:
            return
        copy = self.dirpath / f"step-{step:08d}.ckpt"
        copy.unlink(missing_ok=True)
        try:
            os.link(self.last, copy)
        except OSError:
            shutil.copyfile(self.last, copy)
        for old in sorted(self.dirpath.glob("step-*.ckpt"))[:-self.keep_last]:
            old.unlink()


class KNNMonitor(L.Callback):
    """kNN accuracy of the online backbone on held-out labeled images, every N epochs.

    Also runs once before the first step, which gives the untrained network's accuracy
    with the same initialisation. Results go to the loggers and `history`.
    """

    def __init__(self, bank, test, every_n_epochs: int, k: int = 200, temperature: float = 0.1,
                 out_file: str | Path | None = None):
        self.bank, self.test = bank, test
        self.every, self.k, self.temperature = every_n_epochs, k, temperature
        self.history: list[dict] = []
        self.out_file = Path(out_file) if out_file else None

    def evaluate(self, pl_module: BYOLModule) -> dict:
        cfg = pl_module.cfg
        kw = dict(mean=cfg.augment.mean, std=cfg.augment.std, image_size=cfg.data.image_size,
                  device=pl_module.device, channels_last=cfg.train.channels_last, keep_on_device=True,
                  crop=cfg.data.eval_crop)
        dtype = torch.bfloat16 if "bf16" in str(pl_module.trainer.precision) else None
        net = feature_extractor(pl_module.backbone, pl_module.model.online.hidden_layer)
        with torch.autocast(pl_module.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            bank = self.features(pl_module, net, self.bank.images, kw)
            test = self.features(pl_module, net, self.test.images, kw)
        self.test_features = test
        dev = bank.device
        return knn_accuracy(bank, self.bank.labels.to(dev), test, self.test.labels.to(dev), self.k, self.temperature)

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
        result = self.evaluate(pl_module)
        entry = {"epoch": epoch, "step": trainer.global_step, **result}
        self.history.append(entry)
        for logger in trainer.loggers:
            logger.log_metrics({"knn/top1": result["top1"], "knn/top5": result["top5"]}, step=trainer.global_step)
        if trainer.is_global_zero:
            print(f"kNN after {epoch} epochs: top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%")
            if self.out_file:
                self.out_file.write_text(json.dumps(self.history, indent=1))
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
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = list(state.get("history", []))
