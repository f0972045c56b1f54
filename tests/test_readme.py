"""Every code block of README.md runs, in the order it is written: the Python blocks as they are,
the shell commands on tiny data (the demo textures as `my_images/`, `labeled/train`, `labeled/test`
and `data/shapes`), with runs shortened: epochs divided by 50 (evaluation epochs by 30) and a
small network. A command this machine cannot run (make, pip, many GPUs) is listed in NOT_RUN."""
import copy
import re
import shlex
from pathlib import Path

import pytest
import torch

from byol.cli import main

from test_cli import TINY

README = Path(__file__).resolve().parents[1] / "README.md"
NOT_RUN = {  # command prefix -> why the suite does not run it
    "make": "the two commands themselves: make test is this suite, CI runs make demo's recipe in test_cli",
    "pip": "installs packages",
    "torchrun": "launches processes on several machines",
    "srun": "a SLURM job",
    "byol pretrain --config configs/imagenet.yaml --train.devices 8": "needs 8 GPUs",
}
SMALL = {"model": {"backbone_args": {"stem": "cifar", "width": 0.125}, "projection_hidden_dim": 64,
                   "prediction_hidden_dim": 64, "projection_dim": 32},
         "train": {"batch_size": 32, "knn_k": 10}, "log": {"progress": False, "tensorboard": False, "report": False}}


def code_blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(\w+)\n(.*?)```", README.read_text(), re.S)


def commands(block: str) -> list[list[str]]:
    """Each command of a shell block as argv (continued lines joined, comments dropped)."""
    joined = block.replace("\\\n", " ")
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def shortened(argv: list[str]) -> list[str]:
    """The same command on tiny data: fewer epochs, a small network for pretraining."""
    argv = list(argv)
    for flag, factor in (("--train.epochs", 50), ("--epochs", 30)):
        if flag in argv:
            i = argv.index(flag) + 1
            argv[i] = str(max(1, int(argv[i]) // factor))
    pretraining = argv[:2] == ["byol", "pretrain"] or "--run-type" in argv and "train" in argv
    if pretraining and not {"--help", "--print-config"} & set(argv):
        argv += [*TINY, "--log.report", "false"] + ([] if "--train.epochs" in argv else ["--train.epochs", "1"])
    if "--run-type" in argv and "fine_tune" in argv:
        argv += ["--epochs", "1"]
    return argv


def run_command(argv: list[str]) -> None:
    if argv[1:] in (["--version"],) or "--help" in argv:
        with pytest.raises(SystemExit) as done:
            main(argv[1:])
        assert done.value.code == 0, argv
        return
    assert main(argv[1:]) == 0, argv


def smaller_pretrain(monkeypatch):
    """byol.pretrain(dict) of a README block, on the small network and epochs / 50."""
    import byol.training.pretrain as module

    real = module.pretrain

    def pretrain(cfg, *args, **kwargs):
        if not isinstance(cfg, dict):  # the command line's own call: shortened by its arguments
            return real(cfg, *args, **kwargs)
        cfg = copy.deepcopy(cfg)
        for section, values in SMALL.items():
            cfg.setdefault(section, {}).update(values)
        cfg["data"]["image_size"] = 32
        cfg["train"]["epochs"] = max(1, cfg["train"].get("epochs", 50) // 50)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(module, "pretrain", pretrain)


def test_every_code_block_of_the_readme_runs(demo_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_images").symlink_to(demo_data / "test")  # 100 images in 10 class folders
    (tmp_path / "labeled").symlink_to(demo_data)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "shapes").symlink_to(demo_data)
    smaller_pretrain(monkeypatch)
    namespace: dict = {}
    ran, skipped = [], []
    for lang, block in code_blocks():
        if lang == "python":
            if "import torchvision" in block:
                try:
                    import torchvision  # noqa: F401
                except Exception:  # noqa: BLE001 - it does not import beside some CPU builds of torch
                    skipped.append("torchvision block: torchvision cannot be imported here")
                    continue
                from byol.checkpoint import save_safetensors
                from byol.core.backbones import resnet18

                save_safetensors(resnet18().state_dict(), "backbone.safetensors")  # the default backbone
            exec(compile(block, "README.md", "exec"), namespace)
            ran.append("python")
        elif lang == "bash":
            for argv in commands(block):
                line = shlex.join(argv)
                why = next((w for prefix, w in NOT_RUN.items() if line.startswith(prefix)), None)
                if why:
                    skipped.append(f"{line}: {why}")
                    continue
                assert argv[0] == "byol", f"README command {line!r} is neither run nor listed in NOT_RUN"
                run_command(shortened(argv))
                ran.append(line)
    assert sum(1 for r in ran if r == "python") >= 4 and len(ran) >= 20, ran
    # what the quick start promises was made
    assert (tmp_path / "backbone.safetensors").is_file() and (tmp_path / "embeddings.files.txt").is_file()
    assert (tmp_path / "classifier.safetensors").is_file() and (tmp_path / "runs" / "mine" / "summary.json").is_file()
    assert namespace["features"].shape[0] == len(namespace["files"]) == 100
    assert isinstance(namespace["net_features"], torch.Tensor) and namespace["summary"]["steps"] > 0
    assert all(not s.startswith("byol ") or "8 GPUs" in s for s in skipped), skipped
    capsys.readouterr()
