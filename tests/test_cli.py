"""End to end through the command line, on small generated data (demo shapes)."""
import json
import math
import re
from pathlib import Path

import pytest
import yaml
import torch
from safetensors.torch import load_file

from byol.core.backbones import resnet18
from byol.cli import main

from conftest import TINY
from user_nets import NaNFeatures


def test_demo_writes_run_folder(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["steps"] == 2 * (300 // 32)
    assert [e["epoch"] for e in summary["knn"]] == [0, 1, 2]
    assert (demo_run / "checkpoints" / "last.ckpt").exists()
    assert (demo_run / "csv" / "metrics.csv").read_text().startswith("epoch") or \
        "train/loss" in (demo_run / "csv" / "metrics.csv").read_text()
    assert (demo_run / "config.yaml").exists()


def test_export_loads_into_a_fresh_network(demo_run, tmp_path):
    out = tmp_path / "backbone.safetensors"
    assert main(["export", str(demo_run / "checkpoints" / "last.ckpt"), "-o", str(out)]) == 0
    net = resnet18(stem="cifar", width=0.125)
    net.load_state_dict(load_file(str(out)))  # the user's own key names, strict
    ckpt = torch.load(demo_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert torch.equal(net.conv1.weight, ckpt["state_dict"]["model.online.net.conv1.weight"])


def test_evaluate_embed_and_preview(demo_run, demo_data, tmp_path, capsys):
    torch.manual_seed(0)  # the linear probe's draws, whatever ran before in this process
    ckpt = str(demo_run / "checkpoints" / "last.ckpt")
    train, test = str(demo_data / "train"), str(demo_data / "test")
    assert main(["evaluate", "knn", "--checkpoint", ckpt, "--train", train, "--test", test, "-k", "10",
                 "-o", str(tmp_path / "knn.json")]) == 0
    knn = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert knn["protocol"] == "knn" and 0 <= knn["top1"] <= 1 and knn["test_images"] == 100
    assert main(["evaluate", "linear", "--checkpoint", ckpt, "--train", train, "--test", test,
                 "--epochs", "5"]) == 0
    lin = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert lin["protocol"] == "linear" and lin["top1"] > 0.1
    saved = json.loads((demo_run / "checkpoints" / "eval-linear.json").read_text())
    assert saved["top1"] == lin["top1"] and saved["split"] == "test" and saved["settings"]["epochs"] == 5
    for protocol in ("logistic", "linear-aug", "finetune"):
        assert main(["evaluate", protocol, "--checkpoint", ckpt, "--train", train, "--test", test,
                     "--epochs", "1", "--batch-size", "64", "--label-fraction", "0.1", "--seed", "3",
                     "--bn-momentum", "0.01"]) == 0
        r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert r["train_images"] == 30 and r["settings"]["subset_seed"] == 3 and 0 <= r["top1"] <= 1, r
    assert (demo_run / "checkpoints" / "eval-finetune-0.1.json").exists()
    emb = tmp_path / "e.npy"
    assert main(["embed", ckpt, test, "-o", str(emb)]) == 0
    import numpy as np

    assert np.load(emb).shape == (100, 64)  # width 0.125: 512/8 channels
    files = (tmp_path / "e.files.txt").read_text().splitlines()  # which file each row is
    assert len(files) == 100 and files == sorted(files) and (Path(test) / files[0]).is_file()
    mixed = tmp_path / "mixed"  # an unreadable file is left out of the rows and of the list
    mixed.mkdir()
    for name in files[:3]:
        (mixed / Path(name).name).write_bytes((Path(test) / name).read_bytes())
    (mixed / "0-broken.png").write_bytes(b"not an image")
    assert main(["embed", ckpt, str(mixed), "-o", str(tmp_path / "m.npy")]) == 0
    assert (tmp_path / "m.files.txt").read_text().split() == sorted(Path(n).name for n in files[:3])
    assert np.load(tmp_path / "m.npy").shape == (3, 64)
    png = tmp_path / "views.png"
    assert main(["preview", test, "-o", str(png), "-n", "4"]) == 0 and png.stat().st_size > 0


def test_refuses_to_overwrite_and_resumes(demo_run, demo_data, capsys):
    args = ["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(demo_run),
            "--train.epochs", "2", "--train.knn_every", "1", *TINY]
    assert main(args) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(args + ["--train.epochs", "3"]) == 2  # without --resume: refused
    assert main(args + ["--resume", "--train.epochs", "1"]) == 2
    assert "a resume may add epochs, never remove them" in capsys.readouterr().err
    assert main(args + ["--resume", "--train.epochs", "3"]) == 2  # more epochs, but other settings than the run's
    assert "the config differs" in capsys.readouterr().err


def lr_by_step(run) -> dict:
    import csv

    lr = {}
    for segment in sorted(run.glob("csv*/metrics.csv")):  # csv/, then csv-resume1/, ... of a resumed run
        with open(segment) as f:
            lr.update({int(r["step"]): float(r["train/lr"]) for r in csv.DictReader(f) if r.get("train/lr")})
    return lr


def test_resume_with_more_epochs_continues_to_the_new_end_on_the_stretched_schedule(demo_data, tmp_path, capsys):
    def run(out, epochs, *more):
        return main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                     "--train.epochs", str(epochs), "--train.knn_every", "0", "--log.report", "false",
                     "--optim.name", "sgd", "--optim.warmup_epochs", "0", *TINY, *more])

    assert run(tmp_path / "short", 1) == 0
    capsys.readouterr()
    assert run(tmp_path / "short", 2, "--resume") == 0
    out = capsys.readouterr().out
    assert "train.epochs raised from 1 to 2" in out and "stretched" in out
    summary = json.loads((tmp_path / "short" / "summary.json").read_text())
    total = summary["steps"]
    assert total == 2 * (300 // 32)
    lr = lr_by_step(tmp_path / "short")  # csv/ of the first segment, csv-resume1/ of the second
    planned = {step: lr[0] * 0.5 * (1 + math.cos(math.pi * step / total)) for step in range(total)}  # 2 epochs
    later = [step for step in planned if step >= 300 // 32]
    assert all(lr[step] == pytest.approx(planned[step], rel=1e-6) for step in later)  # the 2-epoch cosine
    assert lr[later[0]] > 0.3 * lr[0]  # not the end of the 1-epoch cosine (0)


def test_bad_input_gives_one_line_errors(tmp_path, capsys):
    assert main(["pretrain", "--data.path", str(tmp_path / "missing"), *TINY]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "c.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    assert main(["pretrain", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.epochz'" in err and "epochs" in err
    assert main(["pretrain", "--data.path", str(tmp_path), "--model.hidden_layer", "layer9", *TINY]) == 2
    assert main(["export", str(tmp_path / "none.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_hidden_layer_error_lists_layers(demo_data, tmp_path, capsys):
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--model.hidden_layer", "layer9",
                 "--train.out_dir", str(tmp_path / "r"), *TINY]) == 2
    assert "layers are: conv1" in capsys.readouterr().err


def test_layers_command(capsys):
    assert main(["layers", "resnet18", "--args", "{stem: cifar, width: 0.25}"]) == 0
    out = capsys.readouterr().out
    assert "layer4.1.bn2" in out and "(1, 128, 4, 4)" in out


def test_user_network_by_import_path_and_hidden_layer(demo_data, tmp_path):
    out = tmp_path / "gen"
    args = ["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
            "--model.backbone", "user_nets:TinyGenerator", "--model.backbone_args", "{channels: 8}",
            "--model.hidden_layer", "body", "--train.epochs", "1", "--train.knn_every", "0", *TINY[2:]]
    assert main(args) == 0
    weights = tmp_path / "gen.safetensors"
    assert main(["export", str(out / "checkpoints" / "last.ckpt"), "-o", str(weights)]) == 0
    from user_nets import TinyGenerator

    net = TinyGenerator(channels=8)
    net.load_state_dict(load_file(str(weights)))
    # the layers after the hidden layer were neither run nor trained
    fresh_tail = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert "model.online.net.tail.weight" in fresh_tail


def test_import_path_backbone_from_checkpoint_needs_to_be_named(demo_data, tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                 "--model.backbone", "user_nets:TinyGenerator", "--model.hidden_layer", "body",
                 "--train.epochs", "1", "--train.knn_every", "0", *TINY[2:]]) == 0
    ckpt = str(out / "checkpoints" / "last.ckpt")
    test = str(demo_data / "test")
    assert main(["embed", ckpt, test, "-o", str(tmp_path / "e.npy")]) == 2
    assert "pass --backbone user_nets:TinyGenerator" in capsys.readouterr().err
    assert main(["embed", ckpt, test, "-o", str(tmp_path / "e.npy"), "--backbone", "user_nets:TinyGenerator"]) == 0


def test_mlflow_without_mlflow_installed_says_what_to_do(demo_data, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(tmp_path / "m"),
                 "--mlflow-uri", str(tmp_path / "mlruns"), "--train.epochs", "1", *TINY]) == 2
    assert "pip install 'byol[mlflow]'" in capsys.readouterr().err


def test_backbone_errors_are_one_line(tmp_path, capsys):
    assert main(["layers", "resnet18", "--args", "{stem: nope}"]) == 2
    assert "stem must be 'cifar' or 'imagenet'" in capsys.readouterr().err
    assert main(["layers", "user_nets:TinyGenerator", "--args", "{depth: 3}"]) == 2
    assert "rejected its arguments" in capsys.readouterr().err


def test_a_bad_backbone_argument_names_its_key(demo_data, tmp_path, capsys):
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(tmp_path / "r"),
                 "--train.epochs", "1", *TINY, "--model.backbone_args", "{stem: nope}"]) == 2
    err = capsys.readouterr().err
    assert "backbone_args" in err and "stem must be 'cifar' or 'imagenet', got 'nope'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("augment_on", ["device", "workers"])
def test_streaming_data_path(demo_data, tmp_path, augment_on):
    """Images decoded per item (not in memory), augmented on the device or in the workers."""
    out = tmp_path / augment_on
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                 "--data.in_memory", "false", "--data.num_workers", "0", "--data.augment_on", augment_on,
                 "--train.epochs", "1", "--train.knn_every", "1", *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 270 // 32 and len(summary["knn"]) == 2  # 10 % held out for kNN


def test_images_resident_on_device_train_identically(demo_data, tmp_path):
    """data_on_device moves only indices through the DataLoader: same batches, same weights."""
    outs = []
    for flag in ("false", "true"):
        out = tmp_path / flag
        assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                     "--train.data_on_device", flag, "--train.epochs", "1", "--train.knn_every", "0",
                     *TINY]) == 0
        outs.append(torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"])
    for k in outs[0]:
        assert torch.equal(outs[0][k], outs[1][k]), k


def test_compile_failure_falls_back_to_eager(demo_data, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="torch.compile failed .*no compiler here.*without compilation"):
        assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(tmp_path / "c"),
                     "--train.compile", "true", "--train.epochs", "1", "--train.knn_every", "0", *TINY]) == 0


def test_nonfinite_loss_stops_and_keeps_the_checkpoint(demo_data, tmp_path):
    from byol.config import load_config
    from byol.training.guard import NonFiniteLossError
    from byol.training.pretrain import pretrain

    cfg = load_config(None, ["--data.path", str(demo_data / "train"), "--train.out_dir", str(tmp_path / "n"),
                             "--train.epochs", "2", "--train.knn_every", "0", *TINY[2:]])
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step \d+"):
        pretrain(cfg, net=NaNFeatures(nan_after=6))  # NaN from the third step on
    assert not (tmp_path / "n" / "checkpoints" / "last.ckpt").exists()  # no bad checkpoint written


def test_no_checkpoint_holds_diverged_weights_and_none_is_loaded(demo_data, tmp_path, capsys):
    # weights can overflow while the loss (a bounded cosine) stays finite: the check before each
    # checkpoint write looks at every parameter and buffer, and loading refuses such a file
    import torch

    from byol.checkpoint import load_checkpoint
    from byol.config import load_config
    from byol.training.guard import NonFiniteLossError
    from byol.training.pretrain import pretrain
    from user_nets import DivergingStatistics

    out = tmp_path / "d"
    cfg = load_config(None, ["--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                             "--train.epochs", "2", "--train.knn_every", "0", "--train.checkpoint_every_steps", "1",
                             *TINY[2:]])
    with pytest.raises(NonFiniteLossError, match=r"weights are no longer finite at step (\d+) \(\d+ tensor\(s\) hold "
                                                 r"inf or NaN, e.g. .*running_var\).*The last checkpoint, .*last.ckpt, "
                                                 r"is from before it") as stop:
        pretrain(cfg, net=DivergingStatistics(inf_after=7))  # 2 online forwards per step: inf in step 4 or so
    failed = int(re.search(r"at step (\d+)", str(stop.value)).group(1))
    ckpt = load_checkpoint(out / "checkpoints" / "last.ckpt")  # finite, else refused
    assert 3 <= failed <= 5 and ckpt["global_step"] == failed - 1
    key = next(k for k in ckpt["state_dict"] if k.endswith("running_var"))
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    for argv in (["export", str(bad), "-o", str(tmp_path / "x.safetensors")],
                 ["embed", str(bad), str(demo_data / "test"), "-o", str(tmp_path / "e.npy")],
                 ["evaluate", "knn", "--checkpoint", str(bad), "--train", str(demo_data / "train"),
                  "--test", str(demo_data / "test")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "tensor(s) hold inf or NaN" in err and "running_var" in err, (argv, err)
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "e.npy").exists()
    torch.save(ckpt, out / "checkpoints" / "last.ckpt")  # and a resume from it
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                 "--train.epochs", "2", "--train.knn_every", "0", "--train.checkpoint_every_steps", "1", *TINY[2:],
                 "--resume"]) == 2
    assert "tensor(s) hold inf or NaN" in capsys.readouterr().err


def test_collapse_monitor_is_logged(demo_run):
    text = (demo_run / "csv" / "metrics.csv").read_text()
    assert "train/projection_std" in text


def test_schedules_are_logged_at_a_fine_interval_and_throughput_over_a_window(demo_data, tmp_path):
    from byol.evaluation.report import read_metrics

    out = tmp_path / "sched"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.epochs", "2", "--train.knn_every", "0",
                 "--train.out_dir", str(out), "--train.log_every", "4", "--log.report", "false", *TINY]) == 0
    steps = json.loads((out / "summary.json").read_text())["steps"]
    series = read_metrics(out)
    assert len(series["train/lr"]) == steps and len(series["train/tau"]) == steps  # every step of a short run
    taus = [v for _, v in series["train/tau"]]
    tau_base = yaml.safe_load((out / "config.yaml").read_text())["model"]["tau_base"]  # the recipe for 32-px images
    assert taus == sorted(taus) and taus[0] == pytest.approx(tau_base)  # the cosine from tau_base, not lines ...
    assert 1 - taus[-1] < 0.01 * (1 - tau_base)  # ... to 1 at the last step
    assert len(series["train/images_per_sec"]) >= 2


def test_without_a_check_every_step_no_checkpoint_holds_a_nonfinite_state(demo_data, tmp_path):
    # a GPU run checks the loss at log steps only; a checkpoint due in between must settle it first
    import lightning as L
    import torch

    from byol.checkpoint import load_checkpoint
    from byol.config import load_config
    from byol.training.guard import NonFiniteLossError
    from byol.training.pretrain import pretrain

    class AsOnAGPU(L.Callback):
        def on_fit_start(self, trainer, pl_module):
            pl_module.guard.check_every_step = False

    out = tmp_path / "n"
    cfg = load_config(None, ["--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                             "--train.epochs", "2", "--train.knn_every", "0", "--train.checkpoint_every_steps", "2",
                             *TINY[2:], "--train.log_every", "100"])
    with pytest.raises(NonFiniteLossError, match=r"after step 2 and by step 4"):
        pretrain(cfg, net=NaNFeatures(nan_after=6), callbacks=[AsOnAGPU()])  # NaN from the third step on
    ckpt = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_in_memory_images_are_augmented_in_workers_when_asked(demo_data, tmp_path):
    from byol.config import load_config
    from byol.data.image_sets import AugmentedImages
    from byol.training.data import build_data
    from byol.training.pretrain import plan_run

    cfg = load_config(None, ["--data.path", str(demo_data / "train"), "--data.augment_on", "workers",
                             "--data.num_workers", "1", "--train.knn_every", "0", *TINY[2:]])
    loader = build_data(plan_run(cfg)).loader
    assert isinstance(loader.dataset.dataset, AugmentedImages) and loader.num_workers == 1  # read by (epoch, index)
    batch = next(iter(loader))
    v1, v2 = batch.view1, batch.view2
    assert v1.dtype == torch.float32 and v1.shape == v2.shape == (32, 3, 32, 32) and not torch.equal(v1, v2)
    out = tmp_path / "w"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--data.augment_on", "workers",
                 "--data.num_workers", "0", "--train.epochs", "1", "--train.knn_every", "0",
                 "--train.out_dir", str(out), "--log.report", "false", *TINY]) == 0


def test_the_target_does_not_move_on_a_step_the_fp16_scaler_skipped(demo_data, tmp_path):
    # fp16 loss scaling runs on GPUs only; a stand-in scaler skips optimizer step 1 as an overflow would
    import lightning as L

    from byol.config import load_config
    from byol.training.pretrain import pretrain

    class SkippingScaler:
        def __init__(self):
            self.scale_value, self.calls, self.skipped = 1024.0, 0, False

        def scale(self, x):
            return x

        def unscale_(self, optimizer):
            pass

        def step(self, optimizer, **kw):
            self.skipped = self.calls == 1
            self.calls += 1
            return None if self.skipped else optimizer.step(**kw)

        def update(self):
            self.scale_value /= 2 if self.skipped else 1

        def get_scale(self):
            return self.scale_value

        def state_dict(self):
            return {}

    class Watch(L.Callback):
        def __init__(self):
            self.moved = []

        def on_fit_start(self, trainer, pl_module):
            trainer.precision_plugin.scaler = SkippingScaler()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.before = [p.detach().clone() for p in pl_module.model.target.parameters()]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.moved.append(any(not torch.equal(a, b) for a, b in zip(self.before, pl_module.model.target.parameters())))

    watch = Watch()
    cfg = load_config(None, ["--data.path", str(demo_data / "train"), "--train.out_dir", str(tmp_path / "s"),
                             "--train.epochs", "1", "--train.knn_every", "0", "--train.precision", "bf16",
                             *TINY[2:]])  # mixed precision: the precision plugin holds the scaler
    summary = pretrain(cfg, callbacks=[watch])
    assert watch.moved[:3] == [True, False, True] and summary["scaler_skipped_steps"] == 1


def test_an_exported_backbone_is_read_with_its_own_settings(demo_run, demo_data, tmp_path, capsys):
    from byol.checkpoint import read_export_metadata

    ckpt = demo_run / "checkpoints" / "last.ckpt"
    exported = tmp_path / "b.safetensors"
    assert main(["export", str(ckpt), "-o", str(exported)]) == 0
    meta = read_export_metadata(exported)
    assert meta["image_size"] == 32 and meta["channels"] == 3 and meta["backbone"] == "resnet18"
    assert meta["backbone_args"]["width"] == 0.125 and len(meta["mean"]) == 3 and meta["eval_crop"] == 1.0
    data = ["--train", str(demo_data / "train"), "--test", str(demo_data / "test"), "-k", "10"]
    capsys.readouterr()
    results = []
    for weights in (ckpt, exported):
        assert main(["evaluate", "knn", "--checkpoint", str(weights), *data, "-o", str(tmp_path / "k.json")]) == 0
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert results[0]["top1"] == results[1]["top1"] and results[1]["settings"]["image_size"] == 32


@pytest.mark.parametrize("fast_bf16,expected", [("1", "bf16-mixed"), ("0", "32-true")])
def test_auto_precision_follows_the_probe_and_the_run_says_which(fast_bf16, expected, demo_data, tmp_path,
                                                                monkeypatch, capsys):
    # both answers of the probe on any CPU: the bf16 path (autocast, bf16 kNN features) and the fp32 one
    from byol.training.facts import read_hardware
    from byol.training.plan import choose_precision

    monkeypatch.setenv("BYOL_CPU_BF16", fast_bf16)
    hardware = read_hardware()
    assert choose_precision("auto", False, hardware)[0] == expected
    assert choose_precision("32", False, hardware)[0] == "32-true"
    assert choose_precision("bf16", False, hardware)[0] == "bf16-mixed"
    out = tmp_path / "p"
    assert main(["demo", "--data", str(demo_data), "--out", str(out), "--train.epochs", "1",
                 "--train.knn_every", "1", "--log.report", "false", *TINY]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["precision"] == expected and summary["knn_final_top1"] > 0
    word = "bf16 autocast" if fast_bf16 == "1" else "fp32"
    assert printed.count(f"precision: {word}") == 2  # at the start of the run and in the demo's result line


def test_a_checkpoint_from_before_a_key_existed_resumes_with_that_keys_default(demo_run, tmp_path):
    # a config key added later (model.head_bias, optim.schedule_per) is absent from older checkpoints:
    # its default is what those runs used, so a resume with the default is not a change of the run
    import copy

    from conftest import make_facts

    from byol.config import from_dict
    from byol.training.checks import check_resume_config
    from byol.training.plan import decide

    ckpt = torch.load(demo_run / "checkpoints" / "last.ckpt", weights_only=False)
    saved = ckpt["hyper_parameters"]["config"]
    plan = decide(from_dict(copy.deepcopy(saved)), make_facts(typical_side=None))  # the run's own config, today's keys
    del saved["model"]["head_bias"], saved["optim"]["schedule_per"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    check_resume_config(old, plan)  # accepted
    saved["model"]["head_bias"] = "output"  # a real difference is still named
    torch.save(ckpt, old)
    with pytest.raises(Exception, match="model.head_bias"):
        check_resume_config(old, plan)


def test_demo_config_files_layer_on_the_demo_recipe_and_version_is_printed(tmp_path, monkeypatch, capsys):
    import byol.training.pretrain as pretrain_module
    from byol.version import __version__

    seen = []

    def stop(cfg, resume=False):
        seen.append(cfg)
        raise KeyboardInterrupt  # nothing to run: the resolved settings are what is checked

    monkeypatch.setattr(pretrain_module, "pretrain", stop)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / ".complete").write_text("")  # an existing (empty) demo set: not generated again
    mine = tmp_path / "mine.yaml"
    mine.write_text("optim: {base_lr: 0.09}\n")
    assert main(["demo", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--config", str(mine),
                 "--train.epochs", "3"]) == 130
    cfg = seen[0]
    assert cfg.optim.base_lr == 0.09 and cfg.train.epochs == 3  # the file and the command line
    assert cfg.model.projection_hidden_dim == 1024 and cfg.train.batch_size == 128  # the demo recipe under them
    assert cfg.given["optim.base_lr"] == str(mine)
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0 and capsys.readouterr().out.strip() == f"byol {__version__}"


def test_init_weights_starts_from_saved_weights_of_any_kind(demo_run, demo_data, tmp_path, capsys):
    from byol.checkpoint import backbone_state, load_checkpoint

    trained = demo_run / "checkpoints" / "last.ckpt"
    exported = tmp_path / "b.safetensors"
    assert main(["export", str(trained), "-o", str(exported)]) == 0
    weights = load_file(str(exported))
    torch.save(weights, tmp_path / "b.pth")
    for i, source in enumerate([exported, trained, tmp_path / "b.pth"]):
        out = tmp_path / f"from{i}"
        assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                     "--train.epochs", "0", "--log.report", "false", *TINY,
                     "--model.init_weights", str(source)]) == 0, capsys.readouterr().err
        start = backbone_state(load_checkpoint(out / "checkpoints" / "last.ckpt"))
        assert all(torch.equal(start[k], v) for k, v in weights.items()), source  # online network = the file
    wide = tmp_path / "wide.pth"
    torch.save(resnet18(stem="cifar", width=0.25).state_dict(), wide)
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(tmp_path / "bad"),
                 "--train.epochs", "0", *TINY, "--model.init_weights", str(wide)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "of another shape" in err and "wide.pth" in err
    assert not (tmp_path / "bad").exists()


def test_help_is_grouped_and_shows_a_recipes_values_and_print_config_shows_sources_and_plan(demo_data, tmp_path,
                                                                                           capsys):
    for argv, optimiser in ((["pretrain", "--help"], "lars"), (["pretrain", "--config", "cifar10", "--help"], "sgd")):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert f"  optim.name = {optimiser} " in text
        assert "\ndata: what to train on" in text and "\noptim: optimiser" in text and "\nlog: " in text
    assert "values with --config cifar10 shown" in text
    out = tmp_path / "never"
    assert main(["pretrain", "--config", "cifar10", "--data.path", str(demo_data / "train"), "--train.epochs", "3",
                 "--train.out_dir", str(out), "--print-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("optim.base_lr: 0.06  # ") and line.endswith("cifar10.yaml") for line in lines)
    assert "train.epochs: 3  # command line" in lines and "data.image_size: 32  # " in "\n".join(lines)
    assert lines[-2].startswith("plan: 270 training images at 32 px, 3 epochs x 1 steps = 3 steps of 256 images (14 "
                                "left out of each epoch: the last partial batch); sgd lr 0.06") and "precision: " in lines[-2]
    assert lines[-1].startswith("cost: about ") and "for the run's 3 steps" in lines[-1]
    assert not out.exists()  # nothing written
