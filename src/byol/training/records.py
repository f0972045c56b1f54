"""A finished run's records, written on rank 0: summary.json and the verdict line, the report
(drawn in a process of its own), the MLflow artifacts, and the footer that says where everything
is."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from byol.checkpoint import atomic_write_text
from byol.config import Config


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
