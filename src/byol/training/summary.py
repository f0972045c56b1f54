"""A finished run's figures: summary.json (steps, images, times, kNN before and after, skipped
images), the verdict on whether pretraining helped, and what reproduces the run; close_run makes
them after fit and has rank 0 write them (byol.training.records)."""
from __future__ import annotations

import json
from pathlib import Path

from byol.config import RECIPES_DIR, Config
from byol.evaluation.protocols import mcnemar_exact
from byol.training.plan import Plan
from byol.training.records import finish
from byol.training.run_folder import skipped_by_processes


def finished_summary(out: Path) -> dict | None:
    """The summary.json of a run that finished (written only then), or None."""
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def close_run(plan: Plan, trainer, module, data, wall: float, mlflow, resume: bool) -> dict:
    """After fit: the summary (on rank 0 also written, with the verdict, report and MLflow
    artifacts). A resumed run that had nothing left to train keeps its summary and report."""
    cfg = plan.cfg
    out = Path(cfg.train.out_dir)
    finished = finished_summary(out) if resume else None
    if finished is not None and finished.get("steps") == trainer.global_step:
        if trainer.is_global_zero:
            print(f"byol: the run in {out} was already complete ({trainer.global_step} steps); its summary and "
                  "report are kept as they were")
        return finished
    summary = summarize(plan, trainer, module, data, wall)
    if trainer.is_global_zero:
        finish(cfg, summary, mlflow)
    return summary


def summarize(plan: Plan, trainer, module, data, wall: float) -> dict:
    """The run's summary.json: steps, images, wall time (every segment of a resumed run), kNN
    before and after, the collapse monitor, skipped steps and images, the verdict, and what
    reproduces the run (reproducibility)."""
    from byol.training.monitors import KNNMonitor, TargetAgreement, Throughput, WallClock

    cfg = plan.cfg
    t, out = cfg.train, Path(cfg.train.out_dir)
    clock = next(c for c in trainer.callbacks if isinstance(c, WallClock))
    agreement = next(c for c in trainer.callbacks if isinstance(c, TargetAgreement))
    speed = next(c for c in trainer.callbacks if isinstance(c, Throughput))
    monitor = next((c for c in trainer.callbacks if isinstance(c, KNNMonitor)), None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    summary = {
        "out_dir": str(out), "checkpoint": str(out / "checkpoints" / "last.ckpt"), "epochs": t.epochs,
        "steps": trainer.global_step, "train_images": data.images, "grayscale": data.grayscale,
        "precision": str(trainer.precision),  # what ran: Lightning turns fp16 on a CPU into bf16
        "precision_reason": plan.precision_reason,
        # a resumed run: every segment (the earlier ones up to their last checkpoint) and their sum
        "wall_seconds": round(sum(clock.segments) + wall, 2),
        "wall_seconds_segments": [round(s, 2) for s in (*clock.segments, wall)],
        # this segment: the time between steps spent waiting for the loader's next batch
        "data_wait_seconds": round(speed.waited_seconds, 2), "data_wait_share": round(speed.wait_share(), 4),
        "final_loss": metrics.get("train/loss_epoch"), "skipped_steps": module.guard.skipped_steps,
        "scaler_skipped_steps": module.scaler_skipped_steps,
        "world_size": trainer.world_size, "global_rank": trainer.global_rank,
        "targets_identical_across_ranks": agreement.identical,
        "knn": monitor.history if monitor else [],
    }
    if monitor and monitor.history:
        summary["knn_untrained_top1"] = monitor.history[0]["top1"] if monitor.history[0]["epoch"] == 0 else None
        summary["knn_final_top1"] = monitor.history[-1]["top1"]
        summary["knn_test_images"] = len(monitor.test)
        summary["knn_paired"] = discordant_pairs(monitor.correct, monitor.history)
    std = metrics.get("train/projection_std")  # the collapse monitor's last logged value
    summary["projection_std"] = None if std is None else float(std)
    summary["projection_std_healthy"] = 1.0 / cfg.model.projection_dim ** 0.5
    summary["notes"] = list(cfg.notes)
    dataset = data.loader.dataset
    skipped = getattr(getattr(dataset, "dataset", dataset), "skipped", [])
    skipped = list(dict.fromkeys([*skipped, *skipped_by_processes(out)]))  # data workers' too
    summary["skipped_images"], summary["skipped_image_paths"] = len(skipped), skipped[:1000]
    held = [] if data.test is None else data.test.skipped  # the kNN monitor's held-out images
    summary["skipped_held_out_images"], summary["skipped_held_out_paths"] = len(held), held[:1000]
    summary["verdict"] = verdict(summary, cfg)
    summary["reproducibility"] = reproducibility(plan)
    return summary


def reproducibility(plan: Plan) -> dict:
    """What a run's figures depend on besides its config: the package's version (and commit,
    run from a git checkout), torch's, the processor (and GPU), the threads, the precision and
    why it is that one, and the training processes."""
    import platform

    import torch

    from byol.version import __version__, source_commit

    hw = plan.facts.hardware
    return {"byol": __version__, "byol_commit": source_commit(), "torch": torch.__version__,
            "python": platform.python_version(), "cpu": hw.cpu, "cpu_kind": hw.cpu_kind, "gpu": hw.gpu,
            "threads": hw.threads, "precision": plan.precision, "precision_reason": plan.precision_reason,
            "world_size": plan.world_size}


def describe_reproducibility(summary: dict) -> str:
    """One line of a summary's reproducibility fields, as `make demo` and the report say them."""
    r = summary.get("reproducibility")
    if not r:
        return "reproducibility: not recorded (a run written by an earlier byol)"
    source = f"byol {r['byol']}" + (f" (commit {r['byol_commit']})" if r.get("byol_commit") else "")
    device = r["gpu"] or f"{r['cpu']} ({r['cpu_kind']})"
    return (f"reproducibility: {source}, torch {r['torch']}, {device}, {r['threads']} threads, {r['world_size']} "
            f"process{'es' * (r['world_size'] > 1)}; precision {r['precision']} ({r['precision_reason']})")




def discordant_pairs(correct: dict, history: list[dict]) -> dict | None:
    """The held-out images that only the untrained network, or only the latest one, gets right
    (the discordant pairs of McNemar's test), from the kNN monitor's per-image results
    (KNNMonitor.correct); None without both evaluations."""
    before, after = correct.get("untrained"), correct.get("latest")
    if before is None or after is None or len(before) != len(after) or history[-1]["epoch"] == 0:
        return None
    return {"untrained_only": int((before & ~after).sum()), "final_only": int((after & ~before).sum()),
            "both": int((before & after).sum()), "neither": int((~before & ~after).sum())}


VERDICT_LEVEL = 0.05  # two-sided significance level of the paired test


def verdict(summary: dict, cfg: Config) -> dict:
    """Whether pretraining helped: the final network against itself before the first step (the
    untrained network, or the weights model.init_weights started from) on the same held-out images, decided by McNemar's exact test on the images
    that exactly one of the two gets right (summary["knn_paired"]), at VERDICT_LEVEL. The
    outcome is "helped", "no clear change" or "got worse"; without labels, the collapse monitor."""
    untrained, final = summary.get("knn_untrained_top1"), summary.get("knn_final_top1")
    if cfg.train.epochs == 0:
        shown = f": kNN top-1 {100 * untrained:.2f}%" if untrained is not None else ""
        return {"helped": None, "outcome": None, "message": f"Untrained network evaluated (train.epochs 0){shown}."}
    paired = summary.get("knn_paired")
    if untrained is not None and final is not None:
        gain = 100 * (final - untrained)
        start = f"at the start ({cfg.model.init_weights})" if cfg.model.init_weights else "untrained"
        figures = f"kNN top-1 {100 * untrained:.2f}% {start} -> {100 * final:.2f}% ({gain:+.2f} points"
        if not paired:
            return {"helped": None, "outcome": None, "gain_points": round(gain, 2),
                    "message": f"{figures}); no paired test was possible (the untrained network's per-image "
                               "results are missing), so no verdict."}
        worse, better = paired["untrained_only"], paired["final_only"]
        p = mcnemar_exact(worse, better)
        test = (f"{better} held-out images right only after pretraining, {worse} only before; McNemar's exact "
                f"test p = {p:.2g}")
        base = {"gain_points": round(gain, 2), "p_value": p, "level": VERDICT_LEVEL, "test": "mcnemar-exact",
                "final_only": better, "untrained_only": worse}
        hint = (f"More epochs or more images ({summary['train_images']} now) may help; gentler crops "
                f"(--augment.view1.crop_scale '[0.2, 1.0]' and the same for view2), or {other_recipe(cfg)}; "
                f"docs/recipes.md.")
        if cfg.model.init_weights:  # the start is the user's weights: the verdict is against them
            figures = f"against the weights you started from, {figures}"
        if p < VERDICT_LEVEL and better > worse:
            return {**base, "helped": True, "outcome": "helped",
                    "message": f"Pretraining helped: {figures}; {test})."}
        if p < VERDICT_LEVEL:
            return {**base, "helped": False, "outcome": "got worse",
                    "message": f"Pretraining made the features worse: {figures}; {test}), so the exported "
                               f"backbone is worse than its initialisation. {hint}"}
        return {**base, "helped": False, "outcome": "no clear change",
                "message": f"No clear change from pretraining: {figures}; {test}, not below {VERDICT_LEVEL}), so "
                           f"the difference may be chance. {hint}"}
    std, healthy = summary.get("projection_std"), summary["projection_std_healthy"]
    if std is None:
        state = "not measured"
    elif std < 0.1 * healthy:
        state = f"collapsed (projection std {std:.4f}, healthy about {healthy:.4f})"
    else:
        state = f"not collapsed (projection std {std:.4f}, healthy about {healthy:.4f})"
    return {"helped": None, "outcome": None, "collapse": state,
            "message": f"No check of whether pretraining helped was possible: the kNN monitor needs labeled "
                       f"held-out images (data.val_path with class folders, or labeled training data). "
                       f"Collapse monitor: {state}."}


def other_recipe(cfg: Config) -> str:
    """The recipe a verdict suggests: cifar10 for small images unless it is in use already (named,
    or taken by the plan's recipe for the data)."""
    in_use = {Path(source).stem for source in cfg.given.values() if Path(source).parent == RECIPES_DIR}
    if any(note.startswith("recipe: the cifar10 recipe's settings") for note in cfg.notes):  # the plan took it
        in_use.add("cifar10")
    if cfg.data.image_size <= 64 and "cifar10" not in in_use:
        return "the recipe measured best on small images (--config cifar10)"
    return "another recipe (--config NAME)"
