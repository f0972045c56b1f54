"""Checkpoints that a crash, a full disk or a stop signal cannot spoil: written atomically
(never of a non-finite state), every N epochs and steps, and once more on SIGTERM/SIGINT at the
end of the step in progress."""
from __future__ import annotations

import shutil
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from byol.checkpoint import CheckpointError, atomic_path, atomic_write
from byol.training.module import BYOLModule
from byol.wording import option


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (full disk, permissions); the previous one is intact."""


class LocalCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing the file straight where it is asked to (AtomicCheckpoint
    asks for a temporary file in the checkpoint folder, then renames it). Lightning's own stages
    each checkpoint in memory and then in $TMPDIR (fsspec's transaction), so a small $TMPDIR
    looked like a full output disk."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, path)


class AtomicCheckpoint(L.Callback):
    """Saves `last.ckpt` every N epochs, every M optimizer steps (mid-epoch) and at the end.

    Each write goes to a temporary file that is then renamed over `last.ckpt`, so a crash or
    a full disk mid-write leaves the previous checkpoint intact. With keep_last K > 0 the
    last K checkpoints also stay as step-NNNNNNNN.ckpt (copies, each as large as last.ckpt).
    Before saving, the train loader's position is marked (ResumableLoader) so that a resumed
    run continues with the very batch that comes next.
    """

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1, every_n_steps: int = 0, keep_last: int = 0):
        self.dirpath = Path(dirpath)
        self.every, self.every_steps, self.keep_last = every_n_epochs, every_n_steps, keep_last
        self.saved_step = -1  # the step of the last checkpoint this process wrote

    @property
    def last(self) -> Path:
        return self.dirpath / "last.ckpt"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # at the start of the next batch the previous step is complete (scheduler stepped too)
        step = trainer.global_step
        accumulating = batch_idx % trainer.accumulate_grad_batches != 0
        if self.every_steps and step and step % self.every_steps == 0 and step != self.saved_step \
                and not accumulating:
            self.save(trainer, batches_done=batch_idx)

    def on_train_epoch_end(self, trainer, pl_module):
        epoch = trainer.current_epoch + 1
        if epoch % self.every == 0 or epoch == trainer.max_epochs:
            self.save(trainer, batches_done=trainer.num_training_batches)

    def on_fit_end(self, trainer, pl_module):
        if trainer.max_epochs == 0 and not self.last.exists():  # train.epochs 0: the initial weights
            self.save(trainer, batches_done=0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._position = (trainer.current_epoch, batch_idx + 1)  # where a stop on a signal resumes

    def save_at_stop(self, trainer) -> bool:
        """On a stop signal, at the end of a step: a checkpoint of that step, unless one was just
        written or the step is mid-accumulation (then the previous one stands). True if written."""
        epoch, done = getattr(self, "_position", (trainer.current_epoch, 0))
        if trainer.global_step in (0, self.saved_step) or done % trainer.accumulate_grad_batches != 0:
            return False
        self.save(trainer, batches_done=done, epoch=epoch)
        return True

    def save(self, trainer, batches_done: int, epoch: int | None = None) -> None:
        if isinstance(trainer.lightning_module, BYOLModule):  # never a checkpoint of a non-finite state
            trainer.lightning_module.guard.before_checkpoint(trainer.global_step, trainer.current_epoch)
        loader = trainer.train_dataloader
        if hasattr(loader, "mark"):
            loader.mark(trainer.current_epoch if epoch is None else epoch, batches_done)
        zero = trainer.is_global_zero  # the strategy writes on rank 0 only (Strategy.save_checkpoint)
        try:
            with atomic_path(self.last) if zero else nullcontext(self.last) as path:
                trainer.save_checkpoint(path, weights_only=False)  # the other ranks join its barrier
            if zero:
                self._keep(trainer.global_step)
        except OSError as e:
            raise CheckpointWriteError(
                f"could not write checkpoint {self.last} at step {trainer.global_step} ({e}); training stopped. "
                f"The previous checkpoint, if any, is intact: free space and resume with {option('resume')}") from None
        self.saved_step = trainer.global_step

    def _keep(self, step: int) -> None:
        if not self.keep_last:
            return
        def copy_of_last(f):  # a copy, never a hard link: damage to one file must not reach the other
            with open(self.last, "rb") as src:
                shutil.copyfileobj(src, f)

        atomic_write(self.dirpath / f"step-{step:08d}.ckpt", copy_of_last)
        for old in sorted(self.dirpath.glob("step-*.ckpt"))[:-self.keep_last]:
            old.unlink()


class Interrupted(Exception):
    """The run stopped on SIGTERM or SIGINT; `code` is the exit status (128 + the signal)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.code = 128 + signum


class StopOnSignal(L.Callback):
    """SIGTERM (a scheduler's preemption) and SIGINT (Ctrl+C) stop the run at the end of the step
    in progress, on every rank: a checkpoint of that step is written and the run ends with
    Interrupted (exit 143 or 130), never as if it had finished. A second Ctrl+C stops at once.

    SIGINT is passed on as SIGTERM, whose handling Lightning already shares between the ranks (it
    raises SIGTERMException after the step); where Lightning has no handler, the next step's
    start stops the run instead."""

    def __init__(self, checkpoint: AtomicCheckpoint):
        self.checkpoint = checkpoint
        self.signum: int | None = None
        self._previous: dict = {}
        self._stopped: Interrupted | None = None

    def setup(self, trainer, pl_module, stage):  # before Lightning installs its SIGTERM handler (it keeps ours)
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        import signal

        if self.signum is None:
            self.signum = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.raise_signal(signal.SIGTERM)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.signum is not None:
            raise self.stop(trainer)

    def on_exception(self, trainer, pl_module, exception):
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException):
            self.stop(trainer)

    def stop(self, trainer) -> Interrupted:
        """Write the checkpoint of the step just ended; the Interrupted to end the run with."""
        import signal

        signum = self.signum or signal.SIGTERM
        if self._stopped is None:
            self._stopped = Interrupted(self._message(trainer, signal.Signals(signum).name,
                                                      self.checkpoint.save_at_stop(trainer)), signum)
        return self._stopped

    def _message(self, trainer, name: str, wrote: bool) -> str:
        last, saved = self.checkpoint.last, self.checkpoint.saved_step
        if last.exists():
            holds = f"holds step {saved}" if saved >= 0 else "holds the last checkpoint"
            return (f"stopped by {name} after step {trainer.global_step}; {last} {holds}: to go on, run the same "
                    f"again with {option('resume')}")
        return f"stopped by {name} before any checkpoint was written; nothing to resume: run the command again"

    def teardown(self, trainer, pl_module, stage):
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
