import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CIFAR = Path(os.environ.get("BYOL_CIFAR10_DIR") or
             Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10")

torch.set_num_threads(min(2, os.cpu_count() or 1))

# The precision probe ("auto": bf16 on CPUs with AVX-512 BF16 or AMX, else fp32) answers as this
# says, here and in the subprocesses tests start, so that the suite takes the same paths on every
# CPU. Default: no fast bf16 (fp32). BYOL_CPU_BF16=1 runs the whole suite down the bf16 paths;
# the tests that depend on the answer pin it themselves (monkeypatch.setenv).
os.environ.setdefault("BYOL_CPU_BF16", "0")


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    if not (CIFAR / "train.tar.gz").exists():
        pytest.skip(f"CIFAR-10 copy not found at {CIFAR} (set BYOL_CIFAR10_DIR, or see "
                    "../shared/data/cifar10/README.md)")
    return CIFAR


@pytest.fixture(scope="session")
def small_cifar(tmp_path_factory) -> Path:
    """A folder in the CIFAR-10 copy's layout (train.tar.gz and test.tar.gz, each `<class>/<NNNN>.jpg`
    for ten classes of 32x32 JPEGs), 60 training and 20 test images a class, each class its own
    mean colour: for tests of the benchmarks' machinery, which need the format, not the figures."""
    import io
    import tarfile

    root = tmp_path_factory.mktemp("small-cifar")
    rng = np.random.default_rng(0)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    for name, per_class in (("train", 60), ("test", 20)):
        with tarfile.open(root / f"{name}.tar.gz", "w:gz") as tar:
            for k, c in enumerate(classes):
                for i in range(per_class):
                    pixels = np.clip(rng.normal(25 * k + 15, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                    blob = io.BytesIO()
                    Image.fromarray(pixels).save(blob, "JPEG", quality=75)
                    info = tarfile.TarInfo(f"{c}/{i:04d}.jpg")
                    info.size = blob.tell()
                    blob.seek(0)
                    tar.addfile(info, blob)
    return root


def write_folder(root: Path, classes=("a", "b"), per_class=4, size=(20, 16), mode="RGB", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_folder(tmp_path / "imgs")


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from byol.data.demo import generate_textures

    return generate_textures(tmp_path_factory.mktemp("demo"), train_per_class=30, test_per_class=10)


TINY = ["--model.backbone_args", "{stem: cifar, width: 0.125}", "--model.projection_hidden_dim", "64",
        "--model.prediction_hidden_dim", "64", "--model.projection_dim", "32", "--train.batch_size", "32",
        "--train.knn_k", "10", "--log.progress", "false", "--log.tensorboard", "false", "--data.image_size", "32"]


@pytest.fixture(scope="session")
def demo_run(demo_data, tmp_path_factory):
    """A 2-epoch demo run through the CLI, shared by the tests that read a run folder."""
    from byol.cli import main

    out = tmp_path_factory.mktemp("run") / "demo"
    rc = main(["demo", "--data", str(demo_data), "--out", str(out), "--train.epochs", "2",
               "--train.knn_every", "1", *TINY])
    assert rc == 0
    return out


def make_facts(train_images: int | None = 1800, typical_side: int | None = 32, grayscale: bool = False,
               source: str = "folder", launch=None, cores: int = 2, cuda: bool = False, cpu_bf16: bool = False,
               forced: str | None = None, weights=None, cache: dict | None = None, measurements=(), crop_speeds=()):
    """Hand-made facts (byol.training.facts.Facts) for testing byol.training.plan.decide: no
    folder, no machine, no environment read; no measurements (of similar data, of crop speeds)
    unless given."""
    from byol.data.sources import DataFacts
    from byol.training.facts import Facts, Hardware, Launch

    data = DataFacts(source, "data", train_images, typical_side, grayscale, "hand-made",
                     True if source == "folder" else None, True, cache)
    hardware = Hardware(cuda=cuda, cuda_devices=1 if cuda else 0, cuda_bf16=cuda, gpu="a GPU" if cuda else None,
                        cpu="a CPU", cpu_kind="AVX-512 BF16" if cpu_bf16 else "AVX2 only", cpu_bf16=cpu_bf16,
                        cpu_bf16_forced=forced, cores=cores, threads=cores)
    return Facts(data, weights, launch or Launch("none"), hardware, tuple(measurements), tuple(crop_speeds))
