"""BYOL as a LightningModule: the training step and nothing else.

    module = BYOLModule(net, config)          # config: a dict, a YAML path or recipe name, or a Config
    pl.Trainer(max_epochs=...).fit(module, loader)   # loader: image tensors, (images, labels) or Batch
    net.load_state_dict(module.backbone.state_dict())

One step: the two views of a byol.data.batch.Batch (augmented here, on the training device,
unless the workers did it), the loss, and after a real optimiser step the EMA update of the
target. The machinery every run needs (per-rank random streams, throughput, wall clock,
target agreement) comes with it as callbacks (byol.training.randomness, .monitors); what a NaN loss does is
byol.training.guard's.
"""
from __future__ import annotations

import math
import warnings

import lightning as L
import torch
from torch import nn

from byol.checkpoint import load_initial_weights
from byol.config import Config, ConfigError, as_config, input_channels, to_dict, view_sides
from byol.core.augment import BatchAugment, check_pixels, resize_views, scheduled_size
from byol.core.backbones import build_backbone
from byol.core.model import BYOL, check_sides
from byol.core.optim import WarmupCosine, build_optimizer, build_scheduler, scaled_lr
from byol.data.batch import Batch, as_batch
from byol.training.data import TrainingData
from byol.training.guard import NonFiniteGuard, NonFiniteLossError
from byol.training.monitors import TargetAgreement, Throughput, WallClock
from byol.training.randomness import RankRandomness

SCHEDULE_POINTS = 500  # lr and tau are logged about this many times per run, whatever its length

__all__ = ["BYOLModule", "NonFiniteLossError"]


class BYOLModule(L.LightningModule):
    """net: the backbone (else config's model.backbone is built). data: the TrainingData that
    byol.training.pretrain read, when there is one: its loader's length gives the run's step
    count (asking Lightning for estimated_stepping_batches in configure_optimizers would set
    up the data before a checkpoint's loader position is restored, and a mid-epoch resume would
    restart the epoch), its resident images are kept on the training device (batches are then
    indices into them), and its identity goes into each checkpoint (a resume must find the same
    data)."""

    def __init__(self, net: nn.Module | None = None, config: Config | dict | None = None,
                 data: TrainingData | None = None):
        super().__init__()
        cfg = as_config(config)
        channels, sides = input_channels(cfg.data), view_sides(cfg)
        self.cfg = cfg
        self.save_hyperparameters({"config": to_dict(cfg)})
        if net is None:
            source = cfg.given.get("model.backbone_args")
            net = build_backbone(cfg.model.backbone, args_from=None if source in (None, "command line", "config")
                                 else source, **cfg.model.backbone_args)
        m = cfg.model
        if m.init_weights:  # before the target is copied from the online network
            load_initial_weights(net, m.init_weights)
        self.model = BYOL(net, m, image_size=cfg.data.image_size, in_channels=channels)
        try:  # multi-crop and the resolution schedule need features of one size at every side
            check_sides(self.model, sides, channels)
        except ValueError as e:
            raise ConfigError(f"{e} (data.image_size {cfg.data.image_size}; train.resolution_schedule, "
                              f"augment.small_size); {WITHOUT_LEVERS}") from None
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.pixels = "full" if cfg.data.pixels == "full" else "8-bit"  # auto, not planned: 8-bit pictures
        self.augment = BatchAugment(cfg.augment, channels_last=cfg.train.channels_last,
                                    cropped=cfg.data.large_images == "full",  # crops taken in the data workers
                                    pixels=self.pixels)
        self.step_loss = CompileOrEager(self.model.step, cfg.train.compile)
        self.guard = NonFiniteGuard(self.model, cfg.train.skip_nonfinite, cfg.train.out_dir)
        self.scaler_skipped_steps = 0  # fp16: steps the gradient scaler skipped (overflow)
        self._resident = None if data is None else data.resident  # uint8 images, moved to the device at fit
        self.train_loader = None if data is None else data.loader  # its length is read once the ranks are set up
        self.data_identity = None if data is None else data.identity

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features of `images`, pixels as fit takes them (uint8 0-255 or float in [0, 1],
        check_pixels; full-precision data: float in its own units), normalised as the training
        views were."""
        return self.model.embed(images, self.cfg.augment.mean, self.cfg.augment.std, self.pixels)

    def configure_callbacks(self) -> list:
        return [RankRandomness(self.cfg.train.seed), WallClock(), Throughput(self.cfg.train.log_every),
                TargetAgreement()]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.data_identity is not None:
            checkpoint.setdefault("byol", {})["data"] = self.data_identity

    def on_fit_start(self):
        if self._resident is not None:
            self._resident = self._resident.to(self.device)

    def on_train_start(self):
        """The learning-rate schedule ends where this run ends. A restored scheduler keeps the
        length it was saved with; a resume with more epochs stretches it to the new end, and
        the rate of the step in progress is read again from the longer cosine."""
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            for group, base, fn in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                if isinstance(fn, WarmupCosine) and (fn.warmup_steps, fn.total_steps) != self._schedule:
                    WarmupCosine.__init__(fn, *self._schedule)  # its length only (AfterStep keeps its start)
                    group["lr"] = base * fn(scheduler.last_epoch)

    def view_size(self) -> int:
        """The side of this epoch's views: train.resolution_schedule at the run's fraction done."""
        done = self.current_epoch / max(1, self.trainer.max_epochs)
        return scheduled_size(self.cfg.train.resolution_schedule, done, self.cfg.data.image_size)

    def views(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The two full views at this epoch's side and multi-crop's small views (augment.small_crops)."""
        size = self.view_size()
        if batch.view1 is not None:  # made in the data workers (no small crops there: see the config's rules)
            return (*resize_views((batch.view1, batch.view2), size), [])
        if batch.boxes is not None:  # whole photos: both views' boxes cut and resized here
            return (*self.augment.from_boxes(batch.images, batch.extents, batch.boxes, size), [])
        images = batch.images if batch.indices is None else self._resident[batch.indices.to(self._resident.device)]
        view1, view2 = self.augment(images, batch.partners, size)
        return view1, view2, self.augment.small_views(images) if self.cfg.augment.small_crops else []

    def training_step(self, batch: Batch | torch.Tensor | tuple, batch_idx: int):
        batch = as_batch(batch)  # a plain DataLoader's tensors or (images, labels) too
        if batch_idx == 0 and batch.images is not None and self.pixels == "8-bit":  # one rule for pixels everywhere
            check_pixels(batch.images)
        view1, view2, small = self.views(batch)
        self.guard.before_forward()
        loss, logs = self.step_loss(view1, view2, small)
        log_step = batch_idx % self.cfg.train.log_every == 0
        if not self.guard.after_loss(loss, self.trainer.global_step, self.current_epoch, log_step):
            self.log("train/skipped_steps", float(self.guard.skipped_steps), on_step=True, on_epoch=False,
                     batch_size=len(batch))
            return None  # Lightning skips backward; with no gradients the optimizer changes nothing
        n = len(batch)
        if log_step and self.cfg.train.resolution_schedule:
            self.log("train/view_size", float(view1.shape[-1]), on_step=True, on_epoch=False, batch_size=n)
        if log_step:  # the collapse monitor: about 1/sqrt(d) while healthy, 0 when collapsed
            self.log("train/projection_std", logs["projection_std"], on_step=True, on_epoch=False, batch_size=n)
            self.log("train/projection_std_healthy", 1.0 / self.model.online.projector.out_dim ** 0.5,
                     on_step=True, on_epoch=False, batch_size=n)
        # the loss of the global batch (mean over ranks), as a one-process run would log it
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True,
                 sync_dist=self.trainer.world_size > 1, batch_size=n)
        return loss

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)  # fp16 loss scaling (GPUs only)
        scale = scaler.get_scale() if scaler is not None else None  # one sync per step, fp16 only
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if not self.guard.optimizer_stepped():  # a skipped non-finite step: it counts, the target stays
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

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run (the length of the tau and LR schedules)."""
        if self.train_loader is not None:  # without asking Lightning to load data early (see above)
            acc = self.trainer.accumulate_grad_batches
            return self.trainer.max_epochs * math.ceil(len(self.train_loader) / acc)
        return int(self.trainer.estimated_stepping_batches)

    def global_batch(self) -> int:
        return self.cfg.train.batch_size * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def configure_optimizers(self):
        o = self.cfg.optim
        lr = scaled_lr(o.base_lr, self.global_batch())
        # a part in groups of its own only when it is treated apart (the groups a checkpoint holds stay the same)
        scales = {part: scale for part, scale, apart in (
            (self.model.predictor, o.predictor_lr_scale, o.predictor_lr_scale != 1.0),
            (self.model.backbone, o.backbone_lr_scale, o.backbone_lr_scale != 1.0 or o.backbone_held_epochs > 0))
            if apart}
        optimizer = build_optimizer(self.model.trainable_modules(), o.name, lr, o.weight_decay, o.momentum,
                                    o.trust_coefficient, o.clip_lr, o.exclude_bias_and_norm, scales)
        epochs = max(1, self.trainer.max_epochs)
        per_epoch = 1 if o.schedule_per == "epoch" else max(1, self.total_steps // epochs)
        total = epochs if o.schedule_per == "epoch" else self.total_steps
        self._schedule = (int(o.warmup_epochs * per_epoch), total)  # e.g. lightly's CosineAnnealingLR, per epoch
        held = ({list(scales).index(self.model.backbone): int(o.backbone_held_epochs * per_epoch)}
                if o.backbone_held_epochs > 0 else None)
        scheduler = build_scheduler(optimizer, *self._schedule, held_until=held)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": o.schedule_per}}


WITHOUT_LEVERS = "or train at one side: --train.resolution_schedule '{}' --augment.small_crops 0"


class CompileOrEager:
    """`fn` through torch.compile when `enabled`; if compiling fails, one warning and `fn`
    itself from then on."""

    def __init__(self, fn, enabled: bool):
        self.fn = fn
        self.compiled = None if enabled else False  # None: not tried yet

    def __call__(self, *args):
        if self.compiled is None:
            try:
                self.compiled = torch.compile(self.fn)
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              "training continues without compilation", stacklevel=2)
                self.compiled = False
        return self.compiled(*args) if self.compiled else self.fn(*args)
