"""Options in the caller's words: `--resume` and `--train.epochs 10` to a user of the command
line, `resume=True` and `train.epochs = 10` to a Python caller of byol.pretrain. The command
line says it is the caller (command_line); every message that names an option asks `option`."""
from __future__ import annotations

import contextvars

COMMAND_LINE = contextvars.ContextVar("byol_command_line", default=False)

FLAGS = {"resume": ("--resume", "resume=True")}  # pretrain's own arguments, as each caller passes them


def command_line() -> None:
    """Mark this process's caller as the command line (byol.cli.main calls it first)."""
    COMMAND_LINE.set(True)


def option(key: str, value=None) -> str:
    """`key` (a config key such as train.epochs, or an argument of pretrain such as resume), with
    `value` where given, as the caller gives it."""
    cli = COMMAND_LINE.get()
    if key in FLAGS:
        return FLAGS[key][0 if cli else 1]
    if value is None:
        return f"--{key}" if cli else key
    return f"--{key} {value}" if cli else f"{key} = {value}"
