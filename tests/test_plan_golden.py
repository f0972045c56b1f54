"""The decisions a run shows, held against a reviewed copy (tests/golden/plan.json): for each kind of
data (32-px images, 300x200 photos in memory and streamed, grayscale images, a named data set, shards, video frames,
and a run from weights), with and without a named recipe, what `byol pretrain --print-config`
prints, the lines a run prints before its first step, the config.yaml it saves, and what `byol preview` says of a folder.

A change that means to change a decision rewrites the copy and shows the difference in review:
    BYOL_UPDATE_GOLDEN=1 python -m pytest tests/test_plan_golden.py
"""
import contextlib
import difflib
import io
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

GOLDEN = Path(__file__).parent / "golden" / "plan.json"
COMMON = ["--train.batch_size", "8", "--train.epochs", "2", "--log.report", "false", "--log.tensorboard", "false",
          "--log.progress", "false", "--log.csv", "false", "--data.num_workers", "1"]


def write_data(root: Path) -> dict[str, list[str]]:
    """Each case's data, and the options that name it."""
    rng = np.random.default_rng(0)

    def images(folder: Path, n: int, size: tuple, mode: str = "RGB", suffix: str = ".png"):
        for c in ("a", "b"):
            (folder / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / c / f"{i}{suffix}")
        return folder

    small = images(root / "small", 20, (32, 32))
    photos = images(root / "photos", 12, (300, 200), suffix=".jpg")
    gray = images(root / "gray", 20, (28, 28), mode="L")
    cifar = root / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    entry = {"data": rng.integers(0, 256, (24, 3 * 32 * 32), dtype=np.uint8), "labels": [i % 10 for i in range(24)]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (cifar / name).write_bytes(pickle.dumps(entry))
    (cifar / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    from byol.data.shards import write_shards

    write_shards(small, root / "shards", shard_size=10)
    for c in range(3):
        for k in range(8):
            (root / "video" / f"clip{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "video" / f"clip{c}" / f"{k}.png")
    import torch

    from byol.checkpoint import save_safetensors
    from byol.core.backbones import resnet18

    torch.manual_seed(0)
    save_safetensors(resnet18(stem="cifar").state_dict(), root / "weights.safetensors")
    return {
        "32-px images": ["--data.path", str(small)],
        "300x200 photos": ["--data.path", str(photos)],
        "300x200 photos streamed": ["--data.path", str(photos), "--data.in_memory", "false", "--data.large_images",
                                    "full"],
        "grayscale images": ["--data.path", str(gray)],
        "named data set": ["--data.dataset", "cifar10", "--data.path", str(root / "cifar")],
        "shards": ["--data.dataset", "shards", "--data.path", str(root / "shards")],
        "video frames": ["--data.dataset", "video", "--data.path", str(root / "video")],
        "from weights": ["--data.path", str(small), "--model.init_weights", str(root / "weights.safetensors")],
    }


class Started(Exception):
    """Raised where training would start: the lines before it and the saved config are what is compared."""


def said(argv: list[str], root: Path) -> str:
    """What `byol` prints (stdout and stderr) for argv, the temporary root, the packaged recipes'
    folder (where the checkout is) and the loader's measured rate masked."""
    from byol.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except Started:
            code = "started"
    from byol.config import RECIPES_DIR

    text = out.getvalue().replace(str(root), "<ROOT>").replace(str(RECIPES_DIR), "<RECIPES>")
    text = re.sub(r"about \d+ images/s \(\d+ per process", "about N images/s (N per process", text)
    text = re.sub(r"cost: about [\d.]+ (ms|s|min|h) a step(.*) so about [\d.]+ (ms|s|min|h) for",
                  r"cost: about T a step\2 so about T for", text)
    return f"exit {code}\n{text}"


def capture(root: Path, monkeypatch) -> dict:
    import lightning

    import byol.training.pretrain

    def started(*args, **kwargs):
        raise Started

    monkeypatch.setattr(lightning.Trainer, "fit", started)
    # the cost line's probe steps, timed in every other run of the suite: its figures are masked here (said)
    monkeypatch.setattr(byol.training.pretrain, "probe_seconds", lambda plan, model: [0.01, 0.02])
    cases = write_data(root)
    golden = {}
    for name, data in cases.items():
        for recipe in ([], ["--config", "cifar10"]):
            key = f"{name}{' --config cifar10' if recipe else ''}"
            out = root / "runs" / re.sub(r"\W+", "-", key)
            argv = ["pretrain", *recipe, *data, *COMMON, "--train.out_dir", str(out)]
            golden[key] = {"print_config": said([*argv, "--print-config"], root), "run": said(argv, root),
                           "config_yaml": (out / "config.yaml").read_text().replace(str(root), "<ROOT>")
                           if (out / "config.yaml").exists() else None}
            if "--data.dataset" not in data:  # byol preview reads folders
                options = data[2:] + COMMON[:4]  # what follows the folder, and the batch and run length
                golden[key]["preview"] = said(["preview", data[1], "-o", str(root / "views.png"), "-n", "2", *recipe,
                                               *options], root)
    return golden


def test_the_decisions_shown_and_saved_are_the_reviewed_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("BYOL_CPU_BF16", "0")
    got = capture(tmp_path, monkeypatch)
    if os.environ.get("BYOL_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"rewrote {GOLDEN}")
    expected = json.loads(GOLDEN.read_text())
    assert sorted(got) == sorted(expected)
    differences = [f"{case}: {part}:\n" + "\n".join(difflib.unified_diff(comparable(part, expected[case].get(part)),
                                                                      comparable(part, got[case].get(part)), lineterm=""))
                   for case in expected for part in ("print_config", "run", "config_yaml", "preview")
                   if comparable(part, got[case].get(part)) != comparable(part, expected[case].get(part))]
    assert not differences, f"differs from {GOLDEN}:\n" + "\n".join(differences)


def comparable(part: str, text: str | None) -> list[str]:
    """A part as it is compared: its lines, in order; the keys of print-config and config.yaml
    as a set of lines (the order of a section's keys is not a decision)."""
    lines = (text or "").splitlines()
    return sorted(lines) if part in ("print_config", "config_yaml") else lines
