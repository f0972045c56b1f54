"""Standard data sets, read from small files written here in each official format."""
import gzip
import hashlib
import pickle
import tarfile

import numpy as np
import pytest
import torch

from byol.data import datasets
from byol.data.listing import DataError
from byol.data.datasets import download, load_dataset, read_idx

rng = np.random.default_rng(0)


def write_cifar(root, n=6, classes=10):
    folder = root / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = [i % classes for i in range(n)]
    key = "labels" if classes == 10 else "fine_labels"
    entry = {"data": images.reshape(n, -1), key: labels}
    names = (["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]) if classes == 10 else ["train", "test"]
    for name in names:
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": [f"c{i}" for i in range(10)]} if classes == 10 else \
        {"fine_label_names": [f"f{i}" for i in range(100)]}
    (folder / ("batches.meta" if classes == 10 else "meta")).write_bytes(pickle.dumps(meta))
    return folder, images, labels


def test_cifar10_folder_and_official_archive(tmp_path):
    folder, images, labels = write_cifar(tmp_path / "x")
    train = load_dataset("cifar10", tmp_path / "x", "train")
    assert train.images.shape == (30, 3, 32, 32) and train.classes[3] == "c3"
    assert torch.equal(train.images[:6], torch.from_numpy(images)) and train.labels[:6].tolist() == labels
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    test = load_dataset("cifar10", archive, "test")
    assert torch.equal(test.images, torch.from_numpy(images))


def test_cifar100_fine_labels(tmp_path):
    write_cifar(tmp_path, n=4, classes=100)
    ds = load_dataset("cifar100", tmp_path, "train")
    assert len(ds) == 4 and len(ds.classes) == 100 and ds.labels.tolist() == [0, 1, 2, 3]


def test_stl10_binary_is_column_major(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    true = rng.integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)
    for split in ("train", "test", "unlabeled"):
        (folder / f"{split}_X.bin").write_bytes(true.transpose(0, 1, 3, 2).tobytes())
    (folder / "train_y.bin").write_bytes(bytes([1, 5, 10]))
    (folder / "test_y.bin").write_bytes(bytes([2, 2, 2]))
    (folder / "class_names.txt").write_text("\n".join(f"k{i}" for i in range(10)))
    train = load_dataset("stl10", tmp_path, "train")
    assert torch.equal(train.images, torch.from_numpy(true)) and train.labels.tolist() == [0, 4, 9]
    both = load_dataset("stl10", tmp_path, "train+unlabeled")
    assert len(both) == 6 and both.labels.tolist()[3:] == [-1, -1, -1] and both.classes[0] == "k0"
    with pytest.raises(DataError, match="test_y.bin|unknown split"):
        load_dataset("stl10", tmp_path, "validation")


def write_idx(path, arr):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_mnist_and_emnist_idx(tmp_path):
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 9]))
    mnist = load_dataset("mnist", tmp_path, "test")
    assert mnist.images.shape == (5, 1, 28, 28) and torch.equal(mnist.images[:, 0], torch.from_numpy(imgs))
    gz = tmp_path / "gzip"
    gz.mkdir()
    write_idx(gz / "emnist-letters-train-images-idx3-ubyte.gz", imgs.transpose(0, 2, 1))
    write_idx(gz / "emnist-letters-train-labels-idx1-ubyte.gz", np.array([1, 2, 3, 26, 5]))
    letters = load_dataset("emnist-letters", tmp_path, "train")
    assert torch.equal(letters.images[:, 0], torch.from_numpy(imgs))  # transposed back
    assert letters.labels.tolist() == [0, 1, 2, 25, 4]  # letters labels 1..26 -> 0..25
    for split in ("byclass", "bymerge", "balanced", "digits", "mnist"):
        with pytest.raises(DataError, match=f"emnist-{split}-train-images"):
            load_dataset(f"emnist-{split}", tmp_path, "train")
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01xxxx")
    with pytest.raises(DataError, match="not a uint8 IDX"):
        read_idx(tmp_path / "bad")


def test_download_checks_md5_and_keeps_nothing_on_mismatch(tmp_path, monkeypatch):
    folder, images, _ = write_cifar(tmp_path / "src")
    archive = tmp_path / "src" / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(datasets.SOURCES, "cifar10", [(archive.as_uri(), "cifar-10-python.tar.gz", md5)])
    root = download("cifar10", tmp_path / "dl")
    assert torch.equal(load_dataset("cifar10", root, "test").images, torch.from_numpy(images))
    monkeypatch.setitem(datasets.SOURCES, "cifar10", [(archive.as_uri(), "other.tar.gz", "0" * 32)])
    with pytest.raises(DataError, match="does not match"):
        download("cifar10", tmp_path / "dl2")
    assert not (tmp_path / "dl2").exists()  # the folder it made is gone with the failure


def test_download_without_internet_leaves_no_folder_and_names_the_alternatives(tmp_path, monkeypatch, capsys):
    from byol.cli import main

    missing = (tmp_path / "nowhere" / "cifar-10-python.tar.gz").as_uri()  # fails like an unreachable host
    monkeypatch.setitem(datasets.SOURCES, "cifar10", [(missing, "cifar-10-python.tar.gz", "0" * 32)])
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["download", "cifar10", "--root", str(tmp_path / "a" / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot download" in err
    assert "copy cifar-10-python.tar.gz" in err and "--data.path FOLDER" in err
    assert not (tmp_path / "a").exists()  # both folders it made are removed
    assert main(["download", "cifar10", "--root", str(kept)]) == 2
    assert (kept / "notes.txt").read_text() == "mine"  # a user's folder is never removed


def test_pretrain_on_a_named_dataset(tmp_path):
    from byol.cli import main

    from test_cli import TINY

    write_cifar(tmp_path / "c", n=40)
    out = tmp_path / "run"
    assert main(["pretrain", "--data.dataset", "cifar10", "--data.path", str(tmp_path / "c"),
                 "--train.out_dir", str(out), "--train.epochs", "1", "--train.knn_every", "1", *TINY]) == 0
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_images"] == 200 and len(summary["knn"]) == 2


def test_video_frame_pairs(tmp_path):
    from PIL import Image

    from byol.core.augment import AugmentConfig, TwoViewTransform
    from byol.data.image_sets import VideoFramePairs

    for clip, n in (("clipA", 5), ("clipB", 3), ("single", 1)):
        (tmp_path / clip).mkdir()
        for k in range(n):  # each frame's grey level encodes (clip, frame index)
            level = (0 if clip == "clipA" else 100) + 10 * k
            Image.new("RGB", (20, 20), (level, level, level)).save(tmp_path / clip / f"{k:03d}.png")
    ds = VideoFramePairs(tmp_path, 16, max_frame_gap=2)
    assert len(ds) == 8  # the one-frame clip is skipped
    for i in range(len(ds)):
        for _ in range(10):
            pair = ds[i]
            a, b, label = pair.images, pair.partners, pair.labels
            la, lb = int(a[0, 0, 0]), int(b[0, 0, 0])
            assert a.shape == (3, 16, 16) and label == -1
            assert la != lb and (la < 100) == (lb < 100) and abs(la - lb) <= 20  # same clip, <= 2 apart
    views = VideoFramePairs(tmp_path, 16, transform=TwoViewTransform(AugmentConfig(size=16)))[0]
    v1 = views.view1
    assert v1.dtype == torch.float32 and v1.shape == (3, 16, 16)
    with pytest.raises(DataError, match="no clip sub-folder"):
        VideoFramePairs(tmp_path / "single", 16)


def test_pretrain_on_video_frames(tmp_path):
    from PIL import Image

    from byol.cli import main
    from test_cli import TINY

    for c in range(4):
        (tmp_path / "v" / f"c{c}").mkdir(parents=True)
        for k in range(10):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "v" / f"c{c}" / f"{k}.png")
    assert main(["pretrain", "--data.dataset", "video", "--data.path", str(tmp_path / "v"), "--data.max_frame_gap", "3",
                 "--data.num_workers", "0", "--train.out_dir", str(tmp_path / "run"), "--train.epochs", "1",
                 "--train.knn_every", "0", *TINY]) == 0
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
