"""The config keys as `byol pretrain --help` and `--print-config` show them: each key, its value
and its help text (from the definitions in byol.config), grouped by section."""
from __future__ import annotations

import yaml

from byol.config import Config, describe, flatten, to_dict


def describe_keys(cfg: Config | None = None) -> list[tuple[str, str, str]]:
    """(dotted key, value in `cfg` (default: the defaults), help text) of every config key."""
    rows = []
    for dotted, value in flatten(to_dict(cfg or Config()), "config").items():
        shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        rows.append((dotted, shown, describe().get(dotted, "")))
    return rows


SECTIONS = {"data": "what to train on, and the held-out images of the kNN monitor",
            "model": "the network, where its features are taken, the heads and the EMA target",
            "augment": "the two views (the paper's Table 6; view1 and view2 each)",
            "optim": "optimiser and learning-rate schedule",
            "train": "length, batch, devices, precision, checkpoints, the kNN monitor",
            "log": "what the run folder gets, progress, MLflow",
            "epoch_presets": "settings picked by the run's length (train.epochs)"}


def keys_help(cfg: Config | None = None, title: str = "defaults") -> str:
    """The text `byol pretrain --help` ends with: every key, grouped by section under a heading,
    with its value in `cfg` (the defaults, or what the --config files give) and what it does."""
    rows = describe_keys(cfg)
    width = min(44, max(len(k) + len(d) for k, d, _ in rows) + 4)
    lines = [f"config keys (in a YAML file, or --section.key VALUE on the command line; {title} shown):"]
    section = None
    for dotted, value, text in rows:
        if dotted.split(".")[0] != section:
            section = dotted.split(".")[0]
            lines += ["", f"{section}: {SECTIONS.get(section, '')}".rstrip(": ")]
        lines.append(f"  {dotted} = {value}".ljust(width + 2) + f"  {text}".rstrip())
    return "\n".join(lines)


def describe_config(cfg: Config) -> str:
    """The resolved settings as YAML, each key that a file, preset or the command line set
    followed by where it came from (the rest are defaults or data-aware choices, in cfg.notes)."""
    return "\n".join(f"{k}: {v}" + (f"  # {cfg.given[k]}" if k in cfg.given else "") for k, v, _ in describe_keys(cfg))
