"""Logs that work in a batch job: plain progress lines when the output is a file, the footer at
the end, progress while a classifier trains."""
import io
import os
import subprocess
import sys

from byol.progress import Progress, duration

from test_cli import TINY


def test_duration_and_eta():
    assert (duration(12.3), duration(185), duration(3725)) == ("12s", "3m05s", "1h02m")
    written = io.StringIO()
    progress = Progress(total=10, start_at=4, every=0.0, file=written)
    progress.start -= 6.0  # 6 s for the 2 steps done in this process: 3 s a step
    progress.say(6, "step 6/10")
    assert written.getvalue() == "step 6/10  elapsed 6s  ETA 12s\n"


def test_a_run_whose_output_is_a_file_prints_plain_progress_lines_and_ends_with_the_footer(demo_data, tmp_path):
    out, log = tmp_path / "run", tmp_path / "run.log"
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])}
    with open(log, "w") as f:  # as nohup or SLURM would: stdout is a file, not a terminal
        proc = subprocess.run([sys.executable, "-m", "byol.cli", "pretrain", "--data.path", str(demo_data / "train"),
                               "--data.val_path", str(demo_data / "test"), "--train.out_dir", str(out),
                               "--train.epochs", "1", "--train.knn_every", "1", "--log.report", "false", *TINY,
                               "--log.progress", "true", "--log.progress_every", "0"],
                              stdout=f, stderr=subprocess.PIPE, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = log.read_text().splitlines()
    steps = [line for line in lines if line.startswith("epoch ")]
    assert len(steps) == 9 and "epoch 1/1  step 1/9  loss " in steps[0] and "img/s" in steps[0]
    assert all("ETA" in line for line in steps) and "epoch 1/1  step 9/9" in steps[-1]
    assert lines[-2].startswith("Run folder: ") and "byol export" in lines[-2]
    assert lines[-1] == f"Summary: {out / 'summary.json'}  (every figure of the run, as JSON)"
    assert not any(line.startswith("{") for line in lines)  # the JSON stays in summary.json
    assert "\x1b[" not in log.read_text()  # no progress bar's escape codes in a file


def test_a_classifier_in_training_says_how_far_it_is(demo_run, demo_data, monkeypatch, capsys):
    from byol.cli import main
    from byol.evaluation import protocols

    monkeypatch.setattr(protocols, "PROGRESS_SECONDS", 0.0)
    assert main(["evaluate", "finetune", "--checkpoint", str(demo_run / "checkpoints" / "last.ckpt"),
                 "--train", str(demo_data / "train"), "--test", str(demo_data / "test"), "--epochs", "2",
                 "--batch-size", "100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    said = [line for line in lines if line.startswith("fine-tuning: ")]
    assert said[0].startswith("fine-tuning: epoch 1/2  step 1/6  loss ") and "ETA" in said[0]
    assert said[-1].startswith("fine-tuning: epoch 2/2  step 6/6")
