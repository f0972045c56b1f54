import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from byol.data.decode import fit_image
from byol.data.image_sets import decode_to_memory, MemoryImages, StreamImages
from byol.data.listing import DataError, list_images
from byol.data.splits import split_held_out

from conftest import write_folder


def test_folder_scan_is_recursive_and_labeled(tmp_path):
    root = write_folder(tmp_path / "d", classes=("cat", "dog"), per_class=3)
    (root / "dog" / "nested").mkdir()
    Image.new("RGB", (8, 8)).save(root / "dog" / "nested" / "x.JPG")
    (root / "dog" / "notes.txt").write_text("not an image")
    images = list_images(root)
    assert images.classes == ["cat", "dog"] and len(images) == 7
    assert images.labels.count(1) == 4


def test_unlabeled_folder(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    images = list_images(tmp_path)
    assert not images.labeled and images.labels == [-1, -1, -1]


def test_missing_empty_and_imageless_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="'.*empty' is empty"):
        list_images(tmp_path / "empty")
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="has no image files"):
        list_images(tmp_path / "txt")


def test_tar_archive_in_imagefolder_layout(tmp_path):
    root = write_folder(tmp_path / "train", classes=("airplane", "bird"), per_class=2, size=(32, 32))
    archive = tmp_path / "train.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="train")
    images = list_images(archive)
    assert images.classes == ["airplane", "bird"] and len(images) == 4
    mem = decode_to_memory(images, 32)
    assert mem.images.shape == (4, 3, 32, 32) and mem.labels.tolist() == [0, 0, 1, 1]


def test_corrupt_and_truncated_images_are_skipped_with_one_line_each(tmp_path, capsys):
    root = write_folder(tmp_path / "d", per_class=3)
    (root / "a" / "bad.png").write_bytes(b"not a png at all")
    good = (root / "b" / "0.png").read_bytes()
    (root / "b" / "trunc.png").write_bytes(good[: len(good) // 2])
    (root / "b" / "zero.png").write_bytes(b"")
    mem = decode_to_memory(list_images(root), 16)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("byol: skipping unreadable image ") for line in lines)
    assert any("bad.png (not in an image format PIL can read)" in line for line in lines)
    assert any("zero.png (an empty file (0 bytes))" in line for line in lines)
    assert not any(".py" in line or "BytesIO" in line for line in lines)
    assert len(mem) == 6 and sorted(p.rsplit("/", 1)[-1] for p in mem.skipped) == ["bad.png", "trunc.png", "zero.png"]


def test_grayscale_images_become_three_channels_or_stay_one(tmp_path):
    root = write_folder(tmp_path / "g", mode="L", per_class=2)
    assert decode_to_memory(list_images(root), 16, channels=3).images.shape == (4, 3, 16, 16)
    assert decode_to_memory(list_images(root), 16, channels=1).images.shape == (4, 1, 16, 16)


def test_large_images_random_crop_or_resize():
    img = Image.fromarray(np.arange(200 * 300 * 3, dtype=np.uint32).reshape(200, 300, 3).astype(np.uint8))
    crop = fit_image(img, 64, "crop", np.random.default_rng(0))
    assert crop.shape == (3, 64, 64)
    resized = fit_image(img, 64, "resize")
    assert resized.shape == (3, 64, 64)


def test_stream_dataset_skips_a_file_that_disappears(tmp_path, capsys):
    root = write_folder(tmp_path / "s", per_class=3)
    ds = StreamImages(list_images(root), 16)
    (root / "a" / "1.png").unlink()
    x = ds[1].images
    assert "skipping unreadable image" in capsys.readouterr().err and "1.png" in ds.bad.paths[0]
    assert x.shape == (3, 16, 16) and len(ds.bad) == 1


def test_memory_dataset_batches_and_held_out_split():
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(40) % 4
    ds = MemoryImages(images, labels, ["a", "b", "c", "d"])
    batch = ds.__getitems__([3, 5])
    x, y = batch.images, batch.labels
    assert x.shape == (2, 3, 8, 8) and y.tolist() == [3, 1]
    from byol.data.listing import ImageList

    listing = ImageList("r", [f"{i}.png" for i in range(40)], labels.tolist(), ["a", "b", "c", "d"])
    rest, held = split_held_out(listing, 0.25, seed=0)
    assert len(rest) == 28 and len(held) == 12 and not set(rest.items) & set(held.items)
    assert sorted(held.labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # class-balanced


def test_symbolic_links_never_list_an_image_twice_or_under_another_class(tmp_path, capsys):
    import os

    from conftest import write_folder

    root = write_folder(tmp_path / "data", classes=("a", "b"), per_class=10)
    os.symlink("..", root / "a" / "up")  # a loop: 20 images became 1,220
    os.symlink("../b", root / "a" / "tob")  # b's images under label a
    os.symlink("../b/0.png", root / "a" / "also.png")  # one file twice
    elsewhere = write_folder(tmp_path / "elsewhere", classes=("c",), per_class=3)
    os.symlink(elsewhere / "c", root / "c")  # a class folder kept outside: followed
    images = list_images(root)
    assert len(images) == 23 and len(set(images.items)) == 23
    assert images.classes == ["a", "b", "c"] and images.labels.count(0) == 10 and images.labels.count(1) == 10
    assert all(item.split("/")[0] == images.classes[label] for item, label in zip(images.items, images.labels))
    err = capsys.readouterr().err
    assert "3 symbolic link(s) skipped" in err and len(err.strip().splitlines()) == 1


def test_a_16_bit_png_keeps_its_picture(tmp_path, demo_data):
    # PIL's convert clips 16-bit values at 255: the image became all white
    src = sorted((demo_data / "test").rglob("*.png"))[0]  # a real image of the demo set
    gray8 = np.asarray(Image.open(src).convert("L"))
    (tmp_path / "c").mkdir()
    Image.fromarray(gray8).save(tmp_path / "c" / "eight.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "c" / "sixteen.png")
    assert Image.open(tmp_path / "c" / "sixteen.png").mode == "I;16"
    for channels in (1, 3):
        mem = decode_to_memory(list_images(tmp_path), size=gray8.shape[0], channels=channels)
        eight, sixteen = mem.images[0].float(), mem.images[1].float()
        assert (eight - sixteen).abs().max() <= 1 and sixteen.std() > 5, channels


def test_an_unreadable_image_is_said_once_however_often_it_is_decoded(tmp_path, capsys, monkeypatch):
    # the kNN bank and the training stream both decode it: one line, counted by each
    root = write_folder(tmp_path / "d", classes=("a",), per_class=2, size=(40, 40))
    write_folder(root, classes=("b",), per_class=2, size=(10, 10))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 40 x 40 = 1600 > 2 x 500: a "decompression bomb"
    first, second = decode_to_memory(list_images(root), 16), decode_to_memory(list_images(root), 16)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(first.skipped) == len(second.skipped) == 2 and len(first) == 2 and len(lines) == 2
    assert all("decompression bomb" in line.lower() or "exceeds" in line for line in lines), lines


def test_image_size_comes_from_the_data_unless_set(tmp_path, capsys):
    from conftest import make_facts

    from byol.cli import main
    from byol.config import load_config
    from byol.training.facts import read_facts
    from byol.training.plan import decide

    big = write_folder(tmp_path / "big", per_class=3, size=(300, 200))
    assert read_facts(load_config(None, ["--data.path", str(big)])).data.typical_side == 200
    cfg = decide(load_config(None, []), make_facts(typical_side=200)).cfg
    assert cfg.data.image_size == 200 and cfg.augment.size == 200
    assert "typical shorter side is 200 px" in cfg.notes[0]
    cfg = decide(load_config(None, []), make_facts(typical_side=375)).cfg
    assert cfg.data.image_size == 224 and "kept within 16-224" in cfg.notes[0]
    cfg = decide(load_config(None, ["--data.image_size", "32"]), make_facts(typical_side=375)).cfg  # set: kept, said
    assert cfg.data.image_size == 32 and "12x data.image_size 32" in cfg.notes[0]
    assert decide(load_config(None, []), make_facts(typical_side=10)).cfg.data.image_size == 16
    cfg = load_config(None, ["--data.dataset", "stl10", "--data.path", str(tmp_path)])
    assert decide(cfg, make_facts(typical_side=96, source="stl10")).cfg.data.image_size == 96
    # a run says it at the start and trains at that size
    assert main(["pretrain", "--data.path", str(big), "--train.out_dir", str(tmp_path / "run"), "--train.epochs", "0",
                 "--model.backbone_args", "{stem: cifar, width: 0.125}", "--log.report", "false",
                 "--log.progress", "false", "--log.tensorboard", "false", "--train.batch_size", "4"]) == 0
    assert "data.image_size 200" in capsys.readouterr().out
    import yaml

    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["image_size"] == 200
