"""A run that survives: SIGKILL mid-epoch and resume, full disk, NaN steps, dead data workers."""
import json
import os
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch

from byol.checkpoint import load_checkpoint
from byol.cli import main
from byol.config import load_config
from byol.data.image_sets import StreamImages
from byol.training.saving import CheckpointWriteError
from byol.data.loader import ShardedSampler
from byol.training.pretrain import pretrain
from conftest import TINY
from user_nets import NaNFeatures


def run_args(data, out, *extra):
    return ["pretrain", "--data.path", str(data / "train"), "--train.out_dir", str(out), "--train.epochs", "2",
            "--train.knn_every", "0", "--train.threads", "2", "--log.report", "false", *TINY, *extra]


def weights(out):
    state = load_checkpoint(out / "checkpoints" / "last.ckpt")["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("model.")}


def test_sigkill_mid_epoch_then_resume_is_bit_identical(demo_data, tmp_path):
    steps_per_epoch = 300 // 32  # 9
    full = tmp_path / "full"
    assert main(run_args(demo_data, full)) == 0

    killed = tmp_path / "killed"
    args = run_args(demo_data, killed, "--train.checkpoint_every_steps", "2", "--train.keep_checkpoints", "20")
    proc = subprocess.Popen([sys.executable, "-m", "byol.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step-00000004.ckpt").exists():  # mid-epoch 0 (4 of 9 steps)
        assert proc.poll() is None and time.time() < deadline, "the run ended before its step-4 checkpoint"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(killed / "checkpoints" / "last.ckpt")["global_step"]
    assert step % steps_per_epoch != 0, f"killed at an epoch boundary (step {step}); the test wants mid-epoch"

    assert main(run_args(demo_data, killed, "--train.checkpoint_every_steps", "2", "--train.keep_checkpoints", "20",
                         "--resume")) == 0
    a, b = weights(full), weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-identical on the CPU
    kept = sorted(p.name for p in (killed / "checkpoints").glob("step-*.ckpt"))
    assert "step-00000018.ckpt" in kept  # the resumed run keeps writing them
    summary = json.loads((killed / "summary.json").read_text())
    segments = summary["wall_seconds_segments"]  # the killed segment (to its last checkpoint) and the resumed one
    assert len(segments) == 2 and all(s > 0 for s in segments)
    assert summary["wall_seconds"] == pytest.approx(sum(segments), abs=0.02)


def test_keep_last_k_step_checkpoints(demo_data, tmp_path):
    out = tmp_path / "k"
    assert main(run_args(demo_data, out, "--train.checkpoint_every_steps", "4", "--train.keep_checkpoints", "2")) == 0
    assert sorted(p.name for p in (out / "checkpoints").glob("*.ckpt")) == [
        "last.ckpt", "step-00000016.ckpt", "step-00000018.ckpt"]
    last, kept = out / "checkpoints" / "last.ckpt", out / "checkpoints" / "step-00000018.ckpt"
    assert kept.read_bytes() == last.read_bytes() and os.stat(kept).st_ino != os.stat(last).st_ino  # a copy
    with open(last, "r+b") as f:  # damage to one never reaches the other
        f.write(b"\0" * 64)
    assert load_checkpoint(kept)["global_step"] == 18


def test_failed_checkpoint_write_keeps_the_previous_one(demo_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "disk"
    calls = []
    real = L.Trainer.save_checkpoint

    def full_disk_on_second_save(self, path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as f:
                f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real(self, path, *a, **k)

    monkeypatch.setattr(L.Trainer, "save_checkpoint", full_disk_on_second_save)
    assert main(run_args(demo_data, out)) == 2
    err = capsys.readouterr().err
    assert "could not write checkpoint" in err and "No space left" in err and "intact" in err
    assert load_checkpoint(out / "checkpoints" / "last.ckpt")["epoch"] == 0  # the epoch-1 checkpoint
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]  # no temporary left
    with pytest.raises(CheckpointWriteError):
        raise CheckpointWriteError("is a CheckpointError: the CLI reports it as a user error")


def test_skip_nonfinite_skips_the_step_and_goes_on(demo_data, tmp_path):
    cfg = load_config(None, ["--data.path", str(demo_data / "train"), "--train.out_dir", str(tmp_path / "s"),
                             "--train.epochs", "1", "--train.knn_every", "0", "--train.skip_nonfinite", "true",
                             "--log.report", "false", *TINY[2:]])
    with pytest.warns(UserWarning, match="skipping step 2: the loss is nan"):
        summary = pretrain(cfg, net=NaNFeatures(nan_calls=(6, 7)))  # training step 2 only
    assert summary["skipped_steps"] == 1 and summary["steps"] == 300 // 32  # counted, not applied
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "s").values() if v.is_floating_point())


def test_a_dead_data_worker_is_a_message_not_a_hang(demo_data, tmp_path, monkeypatch, capsys):
    real = StreamImages.decoded

    def die_in_worker(self, i):
        if torch.utils.data.get_worker_info() is not None and i % 7 == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, i)

    monkeypatch.setattr(StreamImages, "decoded", die_in_worker)
    rc = main(run_args(demo_data, tmp_path / "w", "--data.in_memory", "false", "--data.num_workers", "1"))
    assert rc == 2
    err = capsys.readouterr().err
    assert "a data-loading worker failed" in err  # in the first epoch: no checkpoint to promise
    assert "no checkpoint had been written yet" in err and "intact" not in err


def test_sampler_shards_are_disjoint_and_cover_the_epoch(monkeypatch):
    import byol.data.loader as loader

    seen = []
    for rank in range(3):
        monkeypatch.setattr(loader, "world", lambda rank=rank: (rank, 3))
        s = ShardedSampler(10, seed=5)
        s.set_epoch(2)
        assert len(s) == 3
        seen.append(list(s))
    flat = sum(seen, [])
    assert len(set(flat)) == 9  # disjoint, equal shares (one image of 10 left out this epoch)
    monkeypatch.setattr(loader, "world", lambda: (0, 1))
    one = ShardedSampler(10, seed=5)
    one.set_epoch(2)
    order = list(one)
    assert sorted(order[:9]) == sorted(flat)  # the same images as one process would see
    assert order != list(ShardedSampler(10, seed=6))  # the order follows the seed


def test_resume_with_another_number_of_processes_is_refused(demo_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(demo_data, out, "--train.epochs", "1")) == 0
    capsys.readouterr()
    assert main(run_args(demo_data, out, "--train.epochs", "1", "--train.devices", "2", "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "with 2 training processes: it was trained with 1" in err
    assert "train.devices 1 x train.num_nodes 1" in err


def test_resume_on_other_training_data_is_refused(demo_data, tmp_path, capsys):
    # 40 more images would change the plan (steps, the cosine's length) and redraw the held-out split
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_data / "train", data)
    out = tmp_path / "run"
    args = ["pretrain", "--data.path", str(data), "--train.out_dir", str(out), "--train.knn_every", "0",
            "--log.report", "false", *TINY]
    assert main([*args, "--train.epochs", "1"]) == 0
    summary = (out / "summary.json").read_text()
    capsys.readouterr()
    first = sorted(data.rglob("*.png"))[0]
    shutil.copy(first, first.with_name("extra.png"))
    assert main([*args, "--train.epochs", "1", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training data in" in err and "changed since the run started" in err
    import re

    now, had = map(int, re.search(r"it now has (\d+) training images, the run had (\d+)", err).groups())
    assert now == had + 1
    first.with_name("extra.png").rename(first.with_name("other.png"))
    first.unlink()  # the same count, one file renamed
    assert main([*args, "--train.epochs", "1", "--resume"]) == 2
    assert "the same number of training images" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == summary  # the run's files are untouched


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_writes_the_last_step_and_exits_non_zero(demo_data, tmp_path, sig, code):
    # a scheduler's preemption (SIGTERM) or Ctrl+C (SIGINT): the step in progress ends, its
    # checkpoint is written, one line says how to go on, and the exit status is not 0
    out = tmp_path / "run"
    args = run_args(demo_data, out, "--train.epochs", "4", "--train.checkpoint_every_steps", "3")
    proc = subprocess.Popen([sys.executable, "-m", "byol.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last.ckpt").exists():  # training is under way
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(sig).name} after step" in last and "with --resume" in last, last
    step = int(last.split("after step ")[1].split(";")[0])
    assert f"holds step {step}" in last
    assert load_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"] == step > 0
    assert step < 36 and not (out / "summary.json").exists()  # not a finished run
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 36


def test_resuming_a_finished_run_keeps_its_summary(demo_data, tmp_path, capsys):
    out = tmp_path / "done"
    assert main(run_args(demo_data, out, "--train.epochs", "1")) == 0
    before = (out / "summary.json").read_text()
    assert json.loads(before)["final_loss"] is not None
    assert main(run_args(demo_data, out, "--train.epochs", "1", "--resume")) == 0
    assert (out / "summary.json").read_text() == before
    assert "already complete (9 steps)" in capsys.readouterr().out
