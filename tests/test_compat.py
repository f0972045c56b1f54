"""Seed 003's `--run-type train|fine_tune|eval` command line over byol's own commands."""
import json

import pytest
from safetensors.torch import load_file

from byol.core.backbones import resnet18
from byol.cli import main
from byol.cli.compat import translate
from conftest import TINY


def test_dataset_types_and_arguments_translate(tmp_path):
    cmd = translate(["--run-type", "train", "--dataset-type", "emnist_by-class", "--dataset-path", str(tmp_path),
                     "--model-output-folder-path", str(tmp_path / "o"), "--num-workers", "3", "--resume-training",
                     "--mflow-tracking-uri", "file:/x", "--train.epochs", "2"])
    assert cmd[0] == "pretrain" and "--resume" in cmd and cmd[-2:] == ["--train.epochs", "2"]
    assert cmd[cmd.index("--data.dataset") + 1] == "emnist-byclass"
    assert cmd[cmd.index("--data.num_workers") + 1] == "3"
    assert cmd[cmd.index("--mlflow-uri") + 1] == "file:/x"
    cmd = translate(["--run-type", "eval", "--dataset-type", "cifar10", "--dataset-path", str(tmp_path),
                     "--model-path", "m.ckpt", "--model-output-folder-path", str(tmp_path / "o")])
    assert cmd[:4] == ["evaluate", "linear", "--checkpoint", "m.ckpt"] and cmd[cmd.index("--dataset") + 1] == "cifar10"


@pytest.mark.parametrize("argv, message", [
    (["--run-type", "train", "--dataset-type", "custom", "--dataset-path", "{tmp}"], "train' is missing"),
    (["--run-type", "fine_tune", "--dataset-type", "cifar10", "--dataset-path", "{tmp}"], "needs --model-path"),
    (["--run-type", "train", "--dataset-type", "cifar10", "--dataset-path", "{tmp}/nope"], "does not exist"),
])
def test_bad_arguments_are_named(argv, message, tmp_path, capsys):
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_train_fine_tune_eval_on_a_custom_folder(demo_data, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["--dataset-type", "custom", "--dataset-path", str(demo_data), "--model-output-folder-path", str(out)]
    assert main(["--run-type", "train", *common, "--train.epochs", "1", "--train.knn_every", "0",
                 "--log.report", "false", *TINY]) == 0
    ckpt = out / "checkpoints" / "last.ckpt"
    assert ckpt.exists() and "byol pretrain" in capsys.readouterr().out
    assert main(["--run-type", "fine_tune", *common, "--model-path", str(ckpt), "--epochs", "1",
                 "--batch-size", "64"]) == 0
    result = json.loads((out / "fine_tune.json").read_text())
    assert result["protocol"] == "finetune" and result["test_images"] == 100
    weights = load_file(str(out / "fine_tuned.safetensors"))
    assert "head.weight" in weights and weights["head.weight"].shape[0] == 10
    net = resnet18(stem="cifar", width=0.125)  # the fine-tuned network loads into the user's model
    net.load_state_dict({k[9:]: v for k, v in weights.items() if k.startswith("backbone.")})
    from byol.checkpoint import read_export_metadata  # what a user needs to apply it, in the file

    meta = read_export_metadata(out / "fine_tuned.safetensors")
    assert meta["classes"] == sorted(p.name for p in (demo_data / "train").iterdir() if p.is_dir())
    assert meta["protocol"] == "finetune" and meta["image_size"] == 32 and len(meta["mean"]) == 3
    assert meta["backbone"] == "resnet18" and "hidden_layer" in meta and "head" in meta
    assert main(["--run-type", "eval", *common, "--model-path", str(ckpt), "--epochs", "5"]) == 0
    assert json.loads((out / "eval.json").read_text())["protocol"] == "linear"
