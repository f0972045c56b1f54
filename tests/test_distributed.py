"""DDP on the CPU (gloo), 2 processes: the same training as one process with the same global batch.

Augmentation is switched off here (crop of the whole image, no flip/colour/blur/solarize):
each rank draws its own augmentations, so only without them are the two runs' inputs the same.
The network and heads have no batch norm because PyTorch's SyncBatchNorm runs on GPUs only;
on GPUs `train.sync_batchnorm` (default on) makes batch statistics global instead.

Tolerance: both runs compute the same fp32 sums in a different order (two half-batch
gradients all-reduced vs one full batch), which changes results by a few ulps per operation;
over 18 steps the loss differs by about 1e-6 relative. 1e-4 (~1000 fp32 epsilons) allows
for other CPUs, while a wrong shard, a missing gradient average or a mis-scaled learning rate
changes the loss at the first steps by percents.
"""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from byol.checkpoint import load_checkpoint

NO_AUGMENT = [a for v in ("view1", "view2") for a in (
    f"--augment.{v}.crop_scale", "[1, 1]", f"--augment.{v}.crop_ratio", "[1, 1]", f"--augment.{v}.flip_p", "0",
    f"--augment.{v}.jitter_p", "0", f"--augment.{v}.grayscale_p", "0", f"--augment.{v}.blur_p", "0",
    f"--augment.{v}.solarize_p", "0")]
GLOBAL_BATCH = 32


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(demo_data, out, processes: int, launcher: str = "lightning", epochs: int = 2) -> dict:
    args = ["pretrain", "--data.path", str(demo_data / "train"), "--data.val_path", str(demo_data / "test"),
            "--train.out_dir", str(out), "--train.epochs", str(epochs), "--train.knn_every", "1", "--train.knn_k", "10",
            "--train.precision", "32", "--train.log_every", "1", "--train.threads", "1", "--train.accelerator", "cpu",
            "--train.batch_size", str(GLOBAL_BATCH // processes), "--train.devices", str(processes),
            "--model.backbone", "user_nets:NoBatchNorm", "--model.head_batchnorm", "false",
            "--model.projection_hidden_dim", "64", "--model.prediction_hidden_dim", "64",
            "--model.projection_dim", "32", "--log.report", "false", "--log.progress", "false",
            "--log.tensorboard", "false", *NO_AUGMENT]
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])}
    if launcher == "two-nodes":  # two launchers, as on two machines, meeting at a c10d rendezvous on localhost
        rendezvous = [f"--rdzv_endpoint=127.0.0.1:{free_port()}", "--rdzv_backend=c10d", "--rdzv_id=byoltest",
                      "--nnodes=2", "--nproc_per_node=1"]
        nodes = [subprocess.Popen([torchrun, *rendezvous, "-m", "byol.cli", *args, "--train.num_nodes", "2",
                                   "--train.devices", "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(2)]
        results = [node.communicate(timeout=600) for node in nodes]
        for node, (_, err) in zip(nodes, results):
            assert node.returncode == 0, err[-3000:]
        stdout = "".join(out_ for out_, _ in results)
    else:
        if launcher == "torchrun":
            cmd = [torchrun, f"--nproc_per_node={processes}", f"--master_port={free_port()}", "-m", "byol.cli", *args]
        else:
            cmd = [sys.executable, "-m", "byol.cli", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        stdout = proc.stdout
    printed = [line for line in stdout.splitlines() if line.startswith("Run folder: ")]
    assert len(printed) == 1, "only rank 0 prints the footer"
    assert not [p.name for p in out.rglob("*.tmp")], "a temporary file was left behind"
    return json.loads((out / "summary.json").read_text())


def step_losses(out):
    rows = csv.DictReader(open(out / "csv" / "metrics.csv"))
    return [(int(r["step"]), float(r["train/loss_step"])) for r in rows if r.get("train/loss_step")]


@pytest.fixture(scope="module")
def one_process(demo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "one"
    return out, run(demo_data, out, 1)


@pytest.mark.parametrize("launcher", ["lightning", "torchrun", "two-nodes"])
def test_two_processes_match_one_process(demo_data, tmp_path, one_process, launcher):
    """Lightning's own launcher, torchrun on one node, and two torchrun launchers as two nodes."""
    one, s1 = one_process
    two = tmp_path / "two"
    s2 = run(demo_data, two, 2, launcher)
    assert s2["world_size"] == 2 and s2["targets_identical_across_ranks"] is True
    assert s1["steps"] == s2["steps"] == 2 * (300 // GLOBAL_BATCH)
    a, b = step_losses(one), step_losses(two)
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(s1["steps"]))
    for (step, x), (_, y) in zip(a, b):
        assert abs(x - y) <= 1e-4 * abs(x), f"step {step}: one process {x}, two processes {y}"
    # the kNN monitor gathers features across ranks: the same accuracy as one process
    assert [h["top1"] for h in s1["knn"]] == pytest.approx([h["top1"] for h in s2["knn"]], abs=0.011)
    t1, t2 = (load_checkpoint(o / "checkpoints" / "last.ckpt")["state_dict"] for o in (one, two))
    for k in (k for k in t1 if k.startswith("model.target.")):
        torch.testing.assert_close(t1[k], t2[k], rtol=1e-4, atol=1e-6)


def test_torchrun_starts_cleanly_beside_a_busy_core(demo_data, tmp_path):
    """Every rank of a torchrun job starts at once and used to write config.yaml through one
    temporary name (one rank's rename removed the other's file). Ranks that start at different
    moments, as on a busy machine or a cluster, hit it most: run it beside a CPU-burning process."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for attempt in range(2):
            summary = run(demo_data, tmp_path / f"busy{attempt}", 2, "torchrun", epochs=1)
            assert summary["world_size"] == 2 and summary["steps"] == 300 // GLOBAL_BATCH
    finally:
        burner.kill()
        burner.wait()


def test_sync_batchnorm_on_gpus_and_said_off_on_cpus():
    from conftest import make_facts

    from byol.config import load_config
    from byol.training.plan import decide
    from byol.training.trainer import strategy

    def plan(args, cuda):
        return decide(load_config(None, ["--train.accelerator", "gpu" if cuda else "cpu", *args]),
                      make_facts(train_images=4000, cuda=cuda))

    two = ["--train.num_nodes", "2"]  # two processes, one GPU (or CPU) on each of two machines
    on_gpus = plan(two, cuda=True)
    assert on_gpus.sync_batchnorm is True and strategy(on_gpus).__class__.__name__ == "DDPStrategy"
    assert plan([*two, "--train.sync_batchnorm", "false"], cuda=True).sync_batchnorm is False
    assert plan([], cuda=True).sync_batchnorm is False  # one process: nothing to synchronise
    on_cpus = plan(two, cuda=False)
    assert on_cpus.sync_batchnorm is False
    with pytest.warns(UserWarning, match="SyncBatchNorm runs on GPUs only"):
        strategy(on_cpus)
    hidden = plan([*two, "--model.hidden_layer", "layer4"], cuda=False)
    assert strategy(hidden)._ddp_kwargs["find_unused_parameters"] is True  # layers after it get no gradient


def one_process_group(store) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)


def test_the_process_group_a_run_opens_is_closed_and_the_callers_is_kept(tmp_path):
    from byol.training.trainer import closing_process_group

    with closing_process_group():  # as Lightning's DDP opens one inside fit
        one_process_group(tmp_path / "a")
        assert torch.distributed.is_initialized()
    assert not torch.distributed.is_initialized()
    with pytest.raises(RuntimeError), closing_process_group():  # also when the run fails
        one_process_group(tmp_path / "b")
        raise RuntimeError("the run failed")
    assert not torch.distributed.is_initialized()
    one_process_group(tmp_path / "c")  # the caller's own group
    try:
        with closing_process_group():
            pass
        assert torch.distributed.is_initialized()
    finally:
        torch.distributed.destroy_process_group()
