"""Pretraining with Lightning: the facts a run reads once (facts.py), its plan decided once from
them (plan.py), the data built from the plan (data.py), the BYOL step (module.py), the callbacks
around it (monitors.py, saving.py, guard.py, randomness.py), the Trainer (trainer.py), the checks
(checks.py, run_folder.py), the summary and records (summary.py, records.py) and pretrain()
(pretrain.py).

Before any of them imports Lightning, a torchvision that is installed but cannot be imported
(built for another torch) is made to look absent: Lightning's torchmetrics imports torchvision
whenever its package is installed, and would fail every run, also the many that never use it.
"""
from __future__ import annotations

import sys


def quarantine_broken_torchvision() -> None:
    """Import torchvision where it is installed. If that fails: forget its half-imported
    modules, mark it absent (sys.modules["torchvision"] = None: importlib.util.find_spec says
    None and an import raises ImportError), have lightning_utilities' RequirementCache (how
    Lightning and torchmetrics decide what is installed) say it is not, and keep why in
    byol.core.backbones.BROKEN, for a backbone that does need it."""
    import importlib.util
    import warnings

    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchvision  # noqa: F401
        return
    except Exception as e:  # noqa: BLE001 - a RuntimeError from its C++ operators, an OSError, ...
        from byol.core.backbones import BROKEN

        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision"] = None
        lines = str(e).strip().splitlines()
        BROKEN["torchvision"] = f"{type(e).__name__}: {lines[-1] if lines else ''}".rstrip(": ")
    from lightning_utilities.core import imports

    if getattr(imports.RequirementCache, "byol_quarantine", False):
        return
    check = imports.RequirementCache._check_requirement

    def check_requirement(self) -> None:
        if str(self.requirement).split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip() in BROKEN:
            self.available, self.message = False, f"{self.requirement} is installed but does not import"
            return
        check(self)

    imports.RequirementCache._check_requirement = check_requirement
    imports.RequirementCache.byol_quarantine = True


quarantine_broken_torchvision()
