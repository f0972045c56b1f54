"""The `byol` command line (main.py) and the `main.py --run-type ...` arguments of an earlier BYOL command line (compat.py)."""
from byol.cli.main import main

__all__ = ["main"]
