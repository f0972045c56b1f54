"""What happens when the loss is NaN or infinite: the run stops (NonFiniteLossError) with its
last checkpoint from before it, or, with train.skip_nonfinite, the step is skipped: no
optimiser step, no EMA update, and the batch-norm statistics the bad forward changed are put
back. No checkpoint is ever written from a non-finite state: before each write the losses
since the last check and every parameter and buffer are checked."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from byol.wording import option


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops and its last checkpoint is kept."""


def all_ranks(flag: torch.Tensor, op) -> torch.Tensor:
    """`flag` reduced over the ranks of a distributed run (itself otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and \
            torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(flag, op=op)
    return flag


class NonFiniteGuard:
    """Checks every loss of `model`'s training steps, with one entry point per hook:

        guard.before_forward()                             # training_step, before the forward
        guard.after_loss(loss, step, epoch, settle_now)    # False: this step is skipped
        guard.optimizer_stepped()                          # optimizer_step: False for a skipped step
        guard.before_checkpoint(step, epoch)               # before every checkpoint write

    The loss is checked on the CPU every step (free there); on a GPU, to keep steps free of
    device syncs, a flag on the device remembers any non-finite loss until it is settled, at
    log steps (`settle_now`) and before every checkpoint write. With `skip` every step is
    checked at once (one sync). `check_every_step` forces either way (None: by device).
    """

    def __init__(self, model: nn.Module, skip: bool, out_dir: str):
        self.model, self.skip, self.out_dir = model, skip, out_dir
        self.check_every_step: bool | None = None
        self.skipped_steps = 0
        self._skip_pending = False  # the current step was skipped: its optimizer step must not count
        self._flag: torch.Tensor | None = None  # any non-finite loss since the last settle (on the device)
        self._settled_step = 0
        self._snapshot: list[torch.Tensor] | None = None  # with skip: the buffers before the forward

    def before_forward(self) -> None:
        """With skip: keep the buffers (batch-norm statistics) the forward will change, to put back."""
        self._snapshot = [b.clone() for b in self.model.buffers()] if self.skip else None

    def after_loss(self, loss: torch.Tensor, step: int, epoch: int, settle_now: bool) -> bool:
        """True when the step may go on; False when it is skipped (with skip). Raises
        NonFiniteLossError otherwise."""
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is not None:
            if self._finite_everywhere(loss):
                return True
            torch._foreach_copy_(list(self.model.buffers()), snapshot)
            self.skipped_steps += 1
            self._skip_pending = True
            warnings.warn(f"skipping step {step}: the loss is {loss.item()} ({self.skipped_steps} skipped so far)",
                          stacklevel=3)
            return False
        if self.check_every_step if self.check_every_step is not None else loss.device.type == "cpu":
            if not self._finite_everywhere(loss):
                self._raise(f"the loss is {loss.item()} at step {step}", epoch)
            return True
        bad = ~torch.isfinite(loss.detach())
        self._flag = bad if self._flag is None else self._flag | bad
        if settle_now:
            self._settle(step, epoch)
        return True

    def optimizer_stepped(self) -> bool:
        """Whether the optimizer step now ending belongs to a real step, not a skipped one (asked
        once per step): the EMA target moves only after real steps."""
        skipped, self._skip_pending = self._skip_pending, False
        return not skipped

    def before_checkpoint(self, step: int, epoch: int) -> None:
        """Raise NonFiniteLossError if any loss since the last check, or any weight, is not
        finite: no checkpoint is written from a non-finite state."""
        self._settle(step, epoch)
        self._check_weights(step, epoch)

    def _check_weights(self, step: int, epoch: int) -> None:
        """Raise NonFiniteLossError if a parameter or buffer holds inf or NaN (before a checkpoint
        is written): weights can overflow while the loss, a bounded cosine, still looks finite."""
        from byol.checkpoint import nonfinite_keys

        named = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
        finite = torch.stack([torch.isfinite(t).all() for t in named.values() if t.is_floating_point()]).all()
        if not bool(all_ranks(finite.float(), torch.distributed.ReduceOp.MIN).item()):
            bad = nonfinite_keys(named)
            self._raise(f"the weights are no longer finite at step {step} ({len(bad)} tensor(s) hold inf or NaN"
                        + (f", e.g. {bad[0]}" if bad else " on another rank") + ")", epoch)

    def _settle(self, step: int, epoch: int) -> None:
        """Raise NonFiniteLossError if any loss since the last settle was NaN/inf (one sync)."""
        if self._flag is None:
            return
        bad = all_ranks(self._flag.float(), torch.distributed.ReduceOp.MAX)
        self._flag = None
        if bad.item():
            self._raise(f"the loss became NaN or infinite after step {self._settled_step} and by step {step}", epoch)
        self._settled_step = step

    @staticmethod
    def _finite_everywhere(loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank (all ranks must skip a step together)."""
        return bool(all_ranks(torch.isfinite(loss.detach()).float(), torch.distributed.ReduceOp.MIN).item())

    def _raise(self, what: str, epoch: int):
        last = Path(self.out_dir) / "checkpoints" / "last.ckpt"
        kept = f"The last checkpoint, {last}, is from before it" if last.exists() else "No checkpoint was written before it"
        skip = ("" if self.skip else f" (or set {option('train.skip_nonfinite', 'true')})")
        raise NonFiniteLossError(f"{what} (epoch {epoch}); stopped. {kept}. Lower optim.base_lr, or check the "
                                 f"data{skip}.")
