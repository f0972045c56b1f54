"""The checks of a resumed run: that its config and data are the ones its checkpoint was made
with (the checks before any run reads its data are run_folder.check_start's)."""
from __future__ import annotations

from pathlib import Path

from byol.config import Config, ConfigError, resumable_keys, to_dict
from byol.training.plan import Plan


def check_resume_config(last: Path, plan: Plan, identity: dict | None = None) -> dict:
    """Resuming with settings that change the run (model shape, data, schedule) is refused,
    naming the keys that differ. The keys declared resumable (config.resumable_keys: logging,
    speed, the run's length) may change, and train.epochs may grow: the run continues to the new
    end, its learning-rate and tau cosines stretched to it. Returns where the checkpoint is
    ({"epoch", "step"}) and the run's former epochs where they grew ("extended_from"). Refused too: a different number of processes (the learning rate, the
    schedules' length and the data order depend on it), and other training data (`identity`, see
    data_identity): more or fewer images change the schedule, and the held-out split."""
    from byol.checkpoint import checkpoint_config, load_checkpoint

    cfg = plan.cfg
    ckpt = load_checkpoint(last)
    saved = checkpoint_config(ckpt)
    extra = ckpt.get("byol") or {}
    saved_world = extra.get("world_size") or len(extra.get("rng_torch") or [None])
    if plan.world_size != saved_world:
        t = saved.get("train", {})
        raise ConfigError(f"cannot resume {last} with {plan.world_size} training processes: it was trained with "
                          f"{saved_world} (train.devices {t.get('devices')} x train.num_nodes {t.get('num_nodes')}), "
                          "and its learning rate, schedule length and data order depend on that number. Resume with "
                          "the same train.devices and train.num_nodes, or start a new run")
    old_epochs = saved.get("train", {}).get("epochs", cfg.train.epochs)
    if cfg.train.epochs < old_epochs:
        raise ConfigError(f"cannot resume {last} with train.epochs {cfg.train.epochs}: the run was set to {old_epochs} "
                          "epochs; a resume may add epochs, never remove them (start a new run for a shorter one)")
    now, defaults, free = to_dict(cfg), to_dict(Config()), resumable_keys()
    diffs = []
    for section, values in now.items():
        for key, value in values.items():
            name = f"{section}.{key}"
            if name in free:
                continue
            old = saved.get(section, {}).get(key, defaults[section].get(key))  # a key added since: its default
            if old != value:
                diffs.append(f"{name}: {old!r} -> {value!r}")
    if diffs:
        preset = (f" (settings chosen for the run's length, by an epoch preset or the recipe for the data, set some "
                  f"of these for {cfg.train.epochs} epochs: give the run's values on the command line to keep them)"
                  if cfg.train.epochs != old_epochs else "")
        raise ConfigError(f"cannot resume {last}: the config differs from the checkpoint's in "
                          f"{'; '.join(diffs)}{preset}")
    was = extra.get("data")
    if was and identity and was != identity:
        change = (f"it now has {identity['images']} training images, the run had {was['images']}"
                  if was["images"] != identity["images"] else
                  f"it has the same number of training images ({was['images']}), but not the same files")
        raise ConfigError(f"cannot resume {last}: the training data in {cfg.data.path!r} changed since the run started "
                          f"({change}: files added, removed or renamed, or another held-out split from "
                          "train.knn_every, data.val_fraction or data.val_path). Resume with the data and "
                          "settings it started with, or start a new run")
    return {"epoch": int(ckpt.get("epoch", 0)), "step": int(ckpt.get("global_step", 0)),
            "extended_from": old_epochs if cfg.train.epochs != old_epochs else None}


def check_resume(last: Path, plan: Plan, identity: dict | None) -> None:
    """check_resume_config, and the line that says where the run resumes (and that it adds
    epochs, where it does)."""
    where = check_resume_config(last, plan, identity)
    epochs = plan.cfg.train.epochs
    print(f"resuming {last}: epoch {where['epoch'] + 1} of {epochs}, after step {where['step']} of "
          f"{epochs * plan.steps_per_epoch}; the settings and notes above are the ones it started with")
    if where["extended_from"] is not None:
        print(f"train.epochs raised from {where['extended_from']} to {epochs}: the run continues to epoch {epochs}, "
              "its learning-rate and tau cosines stretched to that end")
