"""The `python main.py --run-type ...` command line of an earlier PyTorch BYOL implementation,
translated into byol's own commands.

    byol --run-type train --dataset-type cifar10 --dataset-path DATA --model-output-folder-path OUT
    byol --run-type fine_tune --dataset-type custom --dataset-path DATA --model-path OUT/checkpoints/last.ckpt
    byol --run-type eval --dataset-type emnist_letters --dataset-path DATA --model-path MODEL

A thin layer: each run type becomes one `byol pretrain` / `byol evaluate` call (printed, so
a user can switch to it), and any further `--section.key value` or evaluate options are
passed through. train = BYOL pretraining; fine_tune = the whole network with a linear head
(the fine-tuned model is saved as OUT/fine_tuned.safetensors); eval = linear evaluation
on frozen features.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from byol.config import RECIPES_DIR, ConfigError

DATASET_TYPES = {  # main.py's --dataset-type -> byol's data set name
    "custom": "folder", "cifar10": "cifar10",
    "emnist_by-class": "emnist-byclass", "emnist_by-merge": "emnist-bymerge",
    "emnist_balanced": "emnist-balanced", "emnist_letters": "emnist-letters",
    "emnist_digits": "emnist-digits", "emnist_mnist": "emnist-mnist",
}
RUN_TYPES = ("train", "fine_tune", "eval")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="byol --run-type", description="main.py --run-type arguments")
    p.add_argument("--run-type", required=True, choices=[*RUN_TYPES, "fine-tune"])
    p.add_argument("--dataset-type", required=True, choices=list(DATASET_TYPES))
    p.add_argument("--dataset-path", required=True,
                   help="the data set's folder; for custom, the folder holding train/ and test/")
    p.add_argument("--model-output-folder-path", help="where checkpoints and results go (default runs/RUN_TYPE)")
    p.add_argument("--model-path", help="pretrained model (.ckpt or .safetensors); fine_tune and eval")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--gpu", type=int, help="index of the GPU to use")
    p.add_argument("--mlflow-tracking-uri", "--mflow-tracking-uri", dest="mlflow_tracking_uri")
    p.add_argument("--mlflow-experiment-name", default="byol_experiment")
    p.add_argument("--mlflow-run-id")
    p.add_argument("--resume-training", action="store_true")
    p.add_argument("--model-param-file-path", help="YAML in byol's config format, applied after the run params")
    p.add_argument("--run-param-file-path", help="YAML in byol's config format (default: byol's configs/cifar10.yaml "
                                                 "for cifar10, else the built-in defaults)")
    return p


def _data_args(args, pretraining: bool) -> list[str]:
    name, root = DATASET_TYPES[args.dataset_type], Path(args.dataset_path)
    if not root.exists():
        raise ConfigError(f"--dataset-path {str(root)!r} does not exist")
    if name != "folder":
        return ["--data.dataset", name, "--data.path", str(root)] if pretraining else ["--dataset", name,
                                                                                         "--data", str(root)]
    train, test = root / "train", root / "test"
    for sub in (train, test):
        if not sub.is_dir():
            raise ConfigError(f"--dataset-type custom: {str(sub)!r} is missing; --dataset-path must hold train/ "
                              "and test/ folders with one sub-folder per class")
    return ["--data.path", str(train), "--data.val_path", str(test)] if pretraining else [
        "--train", str(train), "--test", str(test)]


def translate(argv: list[str]) -> list[str]:
    """byol's own argv for main.py's arguments (unknown ones are passed through)."""
    args, rest = build_parser().parse_known_args(argv)
    run_type = "fine_tune" if args.run_type == "fine-tune" else args.run_type
    out = Path(args.model_output_folder_path or f"runs/{run_type}")
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)  # before anything touches CUDA
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--gpu {args.gpu}: no CUDA GPU with that index is visible")
    mlflow = []
    if args.mlflow_tracking_uri:
        mlflow = ["--mlflow-uri", args.mlflow_tracking_uri, "--mlflow-experiment-name", args.mlflow_experiment_name]
        if args.mlflow_run_id:
            mlflow += ["--mlflow-run-id", args.mlflow_run_id]
    if run_type == "train":
        configs = [c for c in (args.run_param_file_path, args.model_param_file_path) if c]
        if not args.run_param_file_path and args.dataset_type == "cifar10":
            configs.insert(0, str(RECIPES_DIR / "cifar10.yaml"))
        cmd = ["pretrain", *(a for c in configs for a in ("--config", c)), *_data_args(args, True),
               "--train.out_dir", str(out), "--data.num_workers", str(args.num_workers), *mlflow]
        if args.gpu is not None:
            cmd += ["--train.accelerator", "gpu", "--train.devices", "1"]
        return cmd + (["--resume"] if args.resume_training else []) + rest
    if not args.model_path:
        raise ConfigError(f"--run-type {run_type} needs --model-path (the pretrained model)")
    if args.resume_training:
        raise ConfigError("--resume-training applies to --run-type train only")
    protocol = "finetune" if run_type == "fine_tune" else "linear"
    cmd = ["evaluate", protocol, "--checkpoint", args.model_path, *_data_args(args, False), *mlflow,
           "-o", str(out / f"{run_type}.json")]
    if run_type == "fine_tune":
        cmd += ["--save-model", str(out / "fine_tuned.safetensors")]
    return cmd + rest

