"""Progress as plain lines, for logs that are files (nohup, SLURM, CI) where a progress bar shows
nothing until the job ends: at most one line every `every` seconds, flushed at once, each with
the ETA of the whole job.

    progress = Progress(total=steps, every=30)
    for step in range(steps):
        ...
        if progress.due():
            progress.say(step + 1, f"step {step + 1}/{steps}  loss {loss:.4f}")
"""
from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    """3725 -> '1h02m', 185 -> '3m05s', 12.3 -> '12s'."""
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Lines about `total` units of work (steps, epochs), of which `start_at` were done before
    this process began (a resumed run): the ETA comes from this process's own rate."""

    def __init__(self, total: int, start_at: int = 0, every: float = 30.0, file=None):
        self.total, self.start_at, self.every = total, start_at, every
        self.file = file
        self.start = self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every

    def say(self, done: int, text: str) -> None:
        now = time.monotonic()
        per_unit = (now - self.start) / max(1, done - self.start_at)
        print(f"{text}  elapsed {duration(now - self.start)}  ETA {duration((self.total - done) * per_unit)}",
              file=self.file or sys.stdout, flush=True)
        self.last = now
