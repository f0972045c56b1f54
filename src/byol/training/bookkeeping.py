"""A run's bookkeeping around training: the checks before the data is read (MLflow, devices and
processes; the run folder's are in run_folder.py), a resume's config and data, then summary.json
with its verdict, the report, the MLflow artifacts and the footer that says where everything is."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from byol.checkpoint import atomic_write_text, check_weights_file
from byol.config import RECIPES_DIR, Config, ConfigError, to_dict
from byol.evaluation.protocols import mcnemar_exact
from byol.training.run_folder import check_run_folder, skipped_by_processes

def check_start(cfg: Config, resume: bool) -> Path:
    """The checks before the data is read: the MLflow URI, the devices and processes, and the
    run folder (check_run_folder). Returns the checkpoint path."""
    if cfg.log.mlflow_uri:
        from byol.tracking import check_tracking_uri

        check_tracking_uri(cfg.log.mlflow_uri)
    check_launch(cfg)
    check_initial_weights(cfg)
    return check_run_folder(cfg, resume)


def check_initial_weights(cfg: Config) -> None:
    """model.init_weights there before the data is read: a file that exists, or named weights
    found in their cache or downloaded into it (byol.pretrained.fetch; one line where neither)."""
    from byol import pretrained

    source = cfg.model.init_weights
    if not source:
        return
    if pretrained.is_named(source):
        pretrained.fetch(source)
    else:
        check_weights_file(Path(source))


def check_launch(cfg: Config) -> None:
    """A GPU asked for where there is none (or fewer than train.devices), and a launcher's
    WORLD_SIZE that differs from train.devices x train.num_nodes, are one line each."""
    t = cfg.train
    if t.accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"train.accelerator {t.accelerator}: this machine has no CUDA GPU that torch "
                              f"can use (torch {torch.__version__}); use train.accelerator auto or cpu")
        if t.devices > torch.cuda.device_count():
            raise ConfigError(f"train.devices {t.devices}: this machine has {torch.cuda.device_count()} "
                              "CUDA GPU(s); ask for at most that many")
    world = os.environ.get("WORLD_SIZE")
    if world is not None and int(world) != t.devices * t.num_nodes:
        raise ConfigError(f"the launcher started {world} training processes (WORLD_SIZE), but train.devices "
                          f"{t.devices} x train.num_nodes {t.num_nodes} = {t.devices * t.num_nodes}; set "
                          "train.devices to the processes on each node and train.num_nodes to the nodes")


def check_resume_config(last: Path, cfg: Config, identity: dict | None = None) -> int | None:
    """Resuming with settings that change the run (model shape, data, schedule) is refused,
    naming the keys that differ. Keys that only affect logging or speed may change, and
    train.epochs may grow: the run continues to the new end, its learning-rate and tau cosines
    stretched to it (the run's former epochs are returned; None when unchanged). Refused too: a
    different number of processes (the learning rate, the schedules' length and the data order
    depend on it), and other training data (`identity`, see data_identity): more or fewer
    images change the schedule, and the held-out split."""
    from byol.checkpoint import checkpoint_config, load_checkpoint

    ckpt = load_checkpoint(last)
    saved = checkpoint_config(ckpt)
    extra = ckpt.get("byol") or {}
    saved_world = extra.get("world_size") or len(extra.get("rng_torch") or [None])
    world = int(os.environ.get("WORLD_SIZE", cfg.train.devices * cfg.train.num_nodes))
    if world != saved_world:
        t = saved.get("train", {})
        raise ConfigError(f"cannot resume {last} with {world} training processes: it was trained with {saved_world} "
                          f"(train.devices {t.get('devices')} x train.num_nodes {t.get('num_nodes')}), and its "
                          "learning rate, schedule length and data order depend on that number. Resume with the "
                          "same train.devices and train.num_nodes, or start a new run")
    old_epochs = saved.get("train", {}).get("epochs", cfg.train.epochs)
    if cfg.train.epochs < old_epochs:
        raise ConfigError(f"cannot resume {last} with train.epochs {cfg.train.epochs}: the run was set to {old_epochs} "
                          "epochs; a resume may add epochs, never remove them (start a new run for a shorter one)")
    now, defaults = to_dict(cfg), to_dict(Config())
    free = {"log", "train.out_dir", "train.epochs", "train.knn_every", "train.log_every", "train.threads", "data.num_workers",
            "train.checkpoint_every", "train.checkpoint_every_steps", "train.keep_checkpoints", "train.compile",
            "train.skip_nonfinite", "train.devices", "train.num_nodes", "train.accelerator"}
    diffs = []
    for section, values in now.items():
        if section in free:
            continue
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
        where = cfg.data.path
        change = (f"it now has {identity['images']} training images, the run had {was['images']}"
                  if was["images"] != identity["images"] else
                  f"it has the same number of training images ({was['images']}), but not the same files")
        raise ConfigError(f"cannot resume {last}: the training data in {where!r} changed since the run started "
                          f"({change}: files added, removed or renamed, or another held-out split from "
                          "train.knn_every, data.val_fraction or data.val_path). Resume with the data and "
                          "settings it started with, or start a new run")
    return old_epochs if cfg.train.epochs != old_epochs else None


def check_resume(last: Path, cfg: Config, identity: dict | None) -> None:
    """check_resume_config, and the line that says a resume adds epochs."""
    extended_from = check_resume_config(last, cfg, identity)
    if extended_from is not None:
        print(f"resuming {last} with train.epochs raised from {extended_from} to {cfg.train.epochs}: the run "
              f"continues to epoch {cfg.train.epochs}, its learning-rate and tau cosines stretched to that end")


def close_run(cfg: Config, trainer, module, data, monitor, wall: float, mlflow, resume: bool) -> dict:
    """After fit: the summary (on rank 0 also written, with the verdict, report and MLflow
    artifacts). A resumed run that had nothing left to train keeps its summary and report."""
    out = Path(cfg.train.out_dir)
    finished = finished_summary(out) if resume else None
    if finished is not None and finished.get("steps") == trainer.global_step:
        if trainer.is_global_zero:
            print(f"byol: the run in {out} was already complete ({trainer.global_step} steps); its summary and "
                  "report are kept as they were")
        return finished
    summary = summarize(cfg, trainer, module, data, monitor, wall)
    if trainer.is_global_zero:
        finish(cfg, summary, mlflow)
    return summary


def finished_summary(out: Path) -> dict | None:
    """The summary.json of a run that finished (written only then), or None."""
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def summarize(cfg: Config, trainer, module, data, monitor, wall: float) -> dict:
    """The run's summary.json: steps, images, wall time (every segment of a resumed run), kNN
    before and after, the collapse monitor, skipped steps and images, and the verdict."""
    from byol.training.monitors import TargetAgreement, Throughput, WallClock
    from byol.training.trainer import choose_precision

    t, out = cfg.train, Path(cfg.train.out_dir)
    clock = next(c for c in trainer.callbacks if isinstance(c, WallClock))
    agreement = next(c for c in trainer.callbacks if isinstance(c, TargetAgreement))
    speed = next(c for c in trainer.callbacks if isinstance(c, Throughput))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    summary = {
        "out_dir": str(out), "checkpoint": str(out / "checkpoints" / "last.ckpt"), "epochs": t.epochs,
        "steps": trainer.global_step, "train_images": data.images, "grayscale": data.grayscale,
        "precision": str(trainer.precision),  # what ran: Lightning turns fp16 on a CPU into bf16
        "precision_reason": choose_precision(t.precision, t.accelerator)[1],
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
        summary["knn_paired"] = monitor.paired()
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
    return summary


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
    """The recipe a verdict suggests: cifar10 for small images unless it is in use already."""
    in_use = {Path(source).stem for source in cfg.given.values() if Path(source).parent == RECIPES_DIR}
    if cfg.data.image_size <= 64 and "cifar10" not in in_use:
        return "the recipe measured best on small images (--config cifar10)"
    return "another recipe (--config NAME)"


LOADER_BOUND_SHARE = 0.2  # above this share of the time waiting for data, the end of a run says so


def finish(cfg: Config, summary: dict, mlflow) -> None:
    """On rank 0: summary.json, the verdict line, the report (which never fails the run) and the
    MLflow artifacts."""
    out = Path(summary["out_dir"])
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(summary["verdict"]["message"])
    if summary["data_wait_share"] > LOADER_BOUND_SHARE:
        print(f"the steps waited for data {summary['data_wait_share']:.0%} of the training time: the input pipeline "
              "is the bottleneck; raise data.num_workers, install the fast-jpeg extra, or train on a resized copy "
              "(byol cache SRC DST --max-side 512)")
    if cfg.log.report:
        report = draw_report(out)
        if report is not None:
            summary["report"] = report
    if mlflow is not None:
        log_artifacts_to_mlflow(mlflow, out, Path(summary["checkpoint"]))


def draw_report(out: Path, timeout: float = 600.0) -> str | None:
    """report.html and its plots, drawn by `byol report` in a process of its own, so that nothing
    in plotting (a crash of native code included) can fail or hide the finished run. Returns the
    report's path, or None after one line on stderr that says why and how to draw it again."""
    import signal
    import subprocess

    try:
        proc = subprocess.run([sys.executable, "-m", "byol.cli", "report", str(out)], capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode == 0:
            return str(out / "report.html")
        if proc.returncode < 0:
            why = f"the report process died of {signal.Signals(-proc.returncode).name}"
        else:
            why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        why = f"drawing took longer than {timeout:.0f} s"
    except OSError as e:
        why = str(e)
    print(f"byol: the report could not be written ({why}); the run itself is complete. Draw it again with: "
          f"byol report {out}", file=sys.stderr)
    return None


def log_artifacts_to_mlflow(logger, out: Path, checkpoint: Path) -> None:
    """The run's files as artifacts of its MLflow run: config.yaml, summary.json, knn.json, the
    report and its plots, and the exported backbone (written to the run folder first as
    backbone.safetensors)."""
    from byol.checkpoint import export_backbone

    client, run_id = logger.experiment, logger.run_id
    export_backbone(checkpoint, out / "backbone.safetensors")
    for name in ("config.yaml", "summary.json", "knn.json", "report.html", "backbone.safetensors"):
        if (out / name).exists():
            client.log_artifact(run_id, str(out / name))
    for png in sorted(out.glob("*.png")):  # beside report.html, which links them by name
        client.log_artifact(run_id, str(png))


def run_footer(summary: dict) -> list[str]:
    """The last lines of a run: where it is, how to export it, its report and its summary."""
    out = summary["out_dir"]
    lines = [f"Run folder: {out}  (export: byol export {summary['checkpoint']} -o backbone.safetensors)"]
    if summary.get("report"):
        lines.append(f"Report: {summary['report']}  (plots of the run; open it in a browser)")
    lines.append(f"Summary: {Path(out) / 'summary.json'}  (every figure of the run, as JSON)")
    return lines
