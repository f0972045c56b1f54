"""Hostile and odd input: nothing a data folder, a config file or a run folder holds may run code,
hang a run, follow a link out of the run folder, or make two processes write one file. Each test
fails on code that lacks the guard it names (real files, real special files, real processes)."""
import multiprocessing
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from byol.cli import main

from conftest import TINY


def run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.err.strip()


# -- one writer per file ------------------------------------------------------------------


def _write_many(path: str, tag: int, times: int, errors) -> None:
    from byol.checkpoint import atomic_write_text

    for i in range(times):
        try:
            atomic_write_text(path, f"{tag}:{i}\n" * 1000)
        except Exception as e:  # noqa: BLE001 - every failure is counted
            errors.put(f"{type(e).__name__}: {e}")


def test_processes_writing_one_file_at_once_each_replace_it_whole(tmp_path):
    """As every rank of a torchrun job wrote config.yaml: with one temporary name, one process's
    rename took the file another was about to rename (FileNotFoundError)."""
    path = tmp_path / "config.yaml"
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_write_many, args=(str(path), tag, 60, errors)) for tag in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert not failures, f"{len(failures)} of 360 writes failed, e.g. {failures[0]}"
    lines = set(path.read_text().splitlines())
    assert len(lines) == 1  # one writer's whole copy, never a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no temporary file left


def test_a_second_run_into_a_used_run_folder_is_refused_naming_the_first(tmp_path, demo_data, capsys):
    from byol.training.run_folder import RunFolderLock

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from byol.training.run_folder import RunFolderLock\n"
        f"lock = RunFolderLock(Path({str(out)!r})).__enter__(); print('held', flush=True); time.sleep(120)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        argv = ["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                "--train.epochs", "1", *TINY]
        rc, err = run(argv, capsys)
        assert rc == 2 and len(err.splitlines()) == 1
        assert f"in use by another byol run (pid {holder.pid} on" in err and "train.out_dir" in err
        assert sorted(p.name for p in out.iterdir()) == [RunFolderLock.NAME]  # nothing of the second run
    finally:
        holder.kill()  # kill -9: the kernel frees the lock, and the stale file blocks nobody
        holder.wait()
    with RunFolderLock(out):
        pass


# -- security ------------------------------------------------------------------------------


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_cifar_folder_whose_pickles_carry_a_payload_is_refused_unrun(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "PWNED"
    good = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(good))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    from byol.data.datasets import load_dataset

    assert len(load_dataset("cifar10", tmp_path, "train")) == 10  # official-shaped batches still load
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}))
    rc, err = run(["pretrain", "--data.dataset", "cifar10", "--data.path", str(tmp_path), "--train.out_dir",
                   str(tmp_path / "run"), "--train.epochs", "1", *TINY], capsys)
    assert rc == 2 and "data_batch_3 is not an official CIFAR batch file" in err and "posix.system" in err
    rc, err = run(["evaluate", "knn", "--checkpoint", str(tmp_path / "x.ckpt"), "--dataset", "cifar10",
                   "--data", str(tmp_path)], capsys)
    assert not marker.exists(), "the pickle's payload ran"


def test_a_config_cannot_call_a_function_that_is_no_model_factory(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    config = tmp_path / "shared.yaml"
    config.write_text(f"model:\n  backbone: 'subprocess:getoutput'\n  backbone_args: {{cmd: 'touch {marker}'}}\n")
    rc, err = run(["pretrain", "--config", str(config), "--data.path", str(tmp_path), "--print-config"], capsys)
    config.write_text(f"model:\n  backbone: 'subprocess:Popen'\n  backbone_args: {{args: 'touch {marker}', "
                      "shell: true}\n")
    rc2, err2 = run(["layers", "subprocess:Popen", "--args", f"{{args: 'touch {marker}', shell: true}}"], capsys)
    time.sleep(0.2)
    assert not marker.exists(), "the config ran a shell command"
    assert rc2 == 2 and "not a torch.nn.Module class" in err2
    from byol.core.backbones import BackboneError, build_backbone

    with pytest.raises(BackboneError, match="was not called.*BYOL_TRUSTED_FACTORIES=subprocess:getoutput"):
        build_backbone("subprocess:getoutput", cmd=f"touch {marker}")
    assert not marker.exists()
    assert build_backbone("user_nets:NoBatchNorm") is not None  # an nn.Module class of the user's: fine


def test_a_users_own_factory_runs_when_named_on_the_command_line(monkeypatch):
    from byol.core.backbones import BackboneError, build_backbone

    with pytest.raises(BackboneError, match="not an nn.Module class"):
        build_backbone("user_nets:make_tiny")
    monkeypatch.setenv("BYOL_TRUSTED_FACTORIES", "other:thing, user_nets:make_tiny")
    assert build_backbone("user_nets:make_tiny").__class__.__name__ == "NoBatchNorm"


def test_links_and_special_files_in_the_run_folder_are_refused_not_followed(demo_run, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(demo_run, run_dir)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for name in ("report.html", "knn.png"):
        (run_dir / name).unlink(missing_ok=True)
        (run_dir / name).symlink_to(victim)
    rc, err = run(["report", str(run_dir)], capsys)
    assert rc == 2 and "report.html" in err and "is a symbolic link" in err and len(err.splitlines()) == 1
    assert victim.read_text() == "keep me"
    # a pretraining run into a folder with such a link stops before any work
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "embeddings.npz").symlink_to(victim)
    from conftest import write_folder

    data = write_folder(tmp_path / "data")
    rc, err = run(["pretrain", "--data.path", str(data), "--train.out_dir", str(fresh)], capsys)
    assert rc == 2 and "embeddings.npz" in err and "symbolic link" in err
    # -o onto a device or a FIFO, or a folder, is refused; the special file stays what it was
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    ckpt = str(demo_run / "checkpoints" / "last.ckpt")
    for target, kind in ((fifo, "a FIFO"), (tmp_path, "a folder"), (Path("/dev/null"), "a device")):
        rc, err = run(["export", ckpt, "-o", str(target)], capsys)
        assert rc == 2 and kind in err and len(err.splitlines()) == 1, err
    assert Path("/dev/null").is_char_device() and fifo.is_fifo()


def test_a_long_valid_output_name_is_accepted(demo_run, tmp_path, capsys):
    name = "b" * 240 + ".safetensors"  # 252 characters: within the 255 a name may have
    rc, _ = run(["export", str(demo_run / "checkpoints" / "last.ckpt"), "-o", str(tmp_path / name)], capsys)
    assert rc == 0 and (tmp_path / name).is_file()
    rc, err = run(["export", str(demo_run / "checkpoints" / "last.ckpt"), "-o", str(tmp_path / ("c" * 300))], capsys)
    assert rc == 2 and "too long" in err and len(err.splitlines()) == 1


# -- hangs ---------------------------------------------------------------------------------


def test_a_yaml_alias_bomb_and_a_repeated_section_are_refused_at_once(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\nmodel:\n  backbone_args: {x: *a8}\n")
    start = time.time()
    rc, err = run(["pretrain", "--config", str(bomb), "--print-config"], capsys)
    assert rc == 2 and "aliases expand to more than" in err and time.time() - start < 10
    twice = tmp_path / "twice.yaml"
    twice.write_text("train:\n  epochs: 3\nmodel:\n  tau_base: 0.99\ntrain:\n  seed: 1\n")
    rc, err = run(["pretrain", "--config", str(twice), "--print-config"], capsys)
    assert rc == 2 and "the key 'train' is given twice (lines 1 and 5)" in err


def test_a_fifo_or_dangling_link_among_the_images_is_skipped_with_a_line(tmp_path, capsys):
    from byol.data.listing import list_images

    from conftest import write_folder

    root = write_folder(tmp_path / "imgs")
    os.mkfifo(root / "a" / "pipe.png")
    (root / "b" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    listed = list_images(root)
    assert len(listed) == 8 and "pipe.png" not in " ".join(listed.items)
    assert "2 image name(s) skipped that are no regular file" in capsys.readouterr().err
    rc, err = run(["pretrain", "--data.path", "/dev/null", "--print-config"], capsys)
    assert rc == 2 and "neither a folder nor a .tar archive" in err


# -- silently wrong ------------------------------------------------------------------------


def test_a_3d_output_is_read_by_the_network_kind_and_refused_when_ambiguous():
    import torch
    from torch import nn

    from byol.core.model import HiddenLayerError, feature_extractor

    from user_nets import TinyViT

    conv1d = nn.Sequential(nn.Conv1d(3, 8, 3, padding=1), nn.ReLU())  # (B, 3, L) -> (B, 8, L): channels 8
    x = torch.randn(2, 3, 5)
    assert feature_extractor(conv1d)(x).shape == (2, 8)
    assert feature_extractor(TinyViT(), "ln")(torch.randn(2, 3, 32, 32)).shape == (2, 24)  # tokens: 24 features
    plain = nn.Sequential(nn.Linear(5, 5))  # (B, 8, 5): nothing tells tokens from channels
    with pytest.raises(HiddenLayerError, match=r"tokens 8, features 5.*channels 8, length 5.*model.token_pool"):
        feature_extractor(plain)(torch.randn(2, 8, 5))
    assert feature_extractor(plain, token_pool="mean")(torch.randn(2, 8, 5)).shape == (2, 5)
    assert feature_extractor(plain, token_pool="channels")(torch.randn(2, 8, 5)).shape == (2, 8)


def test_pixels_follow_one_rule_in_fit_and_in_the_modules_features():
    import torch

    from byol.training.module import BYOLModule

    from user_nets import NoBatchNorm

    m = BYOLModule(NoBatchNorm(), {"data": {"image_size": 16}}).eval()
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(m(x), m(x.float() / 255))  # uint8 and float [0, 1] are the same pixels
    with pytest.raises(TypeError, match="int64.*uint8"):
        m(x.long())
    with pytest.raises(ValueError, match=r"divide 0-255 values by 255"):
        m(x.float())
    with pytest.raises(ValueError, match="look normalised already"):
        m((x.float() / 255 - 0.5) / 0.25)
    with pytest.raises(TypeError, match="int64"):
        m.training_step(x.long(), 0)


def test_evaluation_and_command_options_out_of_range_are_one_line(demo_run, demo_data, tmp_path, capsys):
    ckpt, data = str(demo_run / "checkpoints" / "last.ckpt"), str(demo_data / "test")
    knn = ["evaluate", "knn", "--checkpoint", ckpt, "--train", data, "--test", data, "-o", str(tmp_path / "r.json")]
    for extra, flag in ((["-k", "0"], "-k 0"), (["-k", "-1"], "-k -1"), (["--temperature", "0"], "--temperature"),
                        (["--temperature", "-1"], "--temperature"), (["--label-fraction", "0"], "--label-fraction"),
                        (["--label-fraction", "-1"], "--label-fraction"), (["--lr", "nan"], "--lr nan"),
                        (["--lr", "-1"], "--lr -1")):
        rc, err = run([*knn, *extra], capsys)
        assert rc == 2 and f"evaluate: {flag}" in err and "out of range" in err and len(err.splitlines()) == 1, err
    rc, err = run(["evaluate", "linear", *knn[2:], "--epochs", "0"], capsys)
    assert rc == 2 and "--epochs 0 is out of range" in err
    rc, err = run(["evaluate", "finetune", *knn[2:], "--batch-size", "0"], capsys)
    assert rc == 2 and "--batch-size 0 is out of range" in err
    assert not (tmp_path / "r.json").exists()
    for argv, text in ((["layers", "resnet18", "--image-size", "0"], "--image-size 0 is out of range"),
                       (["layers", "resnet18", "--channels", "2"], "--channels 2 is out of range"),
                       (["layers", "user_nets:NoBatchNorm", "--channels", "1"], "cannot take a probe image"),
                       (["preview", data, "-n", "-3", "-o", str(tmp_path / "p.png")], "-n -3 is out of range")):
        rc, err = run(argv, capsys)
        assert rc == 2 and text in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("override, text", [
    ("--data.image_size=100000", "data.image_size = 100000: must be <= 4096"),
    ("--optim.momentum=-5", "optim.momentum = -5.0: must be >= 0"),
    ("--train.threads=-1", "train.threads = -1: must be >= 1"),
    ("--train.seed=-1", "train.seed = -1: must be >= 0"),
    ("--optim.trust_coefficient=-1", "optim.trust_coefficient = -1.0: must be > 0"),
    ("--train.accelerator=tpu", "train.accelerator = 'tpu': must be auto, cpu, gpu or cuda"),
    ("--optim.base_lr=.nan", "optim.base_lr"),
    ("--train.resolution_schedule={0: 1000}", "the side 1000 px is above data.image_size 32 px"),
])
def test_config_values_out_of_range_are_refused_before_any_work(image_folder, tmp_path, capsys, override, text):
    rc, err = run(["pretrain", "--data.path", str(image_folder), "--data.image_size", "32",
                   "--train.out_dir", str(tmp_path / "run"), override], capsys)
    assert rc == 2 and text in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line(image_folder, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, err = run(["pretrain", "--data.path", str(image_folder), "--train.out_dir", str(tmp_path / "run"),
                   "--train.accelerator", "gpu"], capsys)
    assert rc == 2 and "no CUDA GPU" in err and not (tmp_path / "run").exists()


def test_image_kinds_keep_their_meaning(tmp_path):
    from PIL import Image

    from byol.data.image_sets import decode_to_memory
    from byol.data.listing import list_images

    root = tmp_path / "kinds"
    root.mkdir()
    ramp = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))
    Image.fromarray(ramp, "F").save(root / "float01.tif")  # float32 TIFF in [0, 1]
    Image.fromarray(ramp * 1000, "F").save(root / "float1000.tif")  # no sure scale: skipped and said
    portrait = np.zeros((8, 16, 3), np.uint8)
    portrait[:, :8] = 255  # left half white, stored sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: rotate 90 degrees clockwise to view
    Image.fromarray(portrait).save(root / "rotated.jpg", exif=exif, quality=95)
    images = list_images(root)
    decoded = decode_to_memory(images, 16, 3)
    by_name = dict(zip([i for i in images.items if i != "float1000.tif"], decoded.images))
    assert decoded.skipped == [f"{root}/float1000.tif"]
    f = by_name["float01.tif"][0].float()
    assert f[:, 0].max() <= 1 and f[:, -1].min() >= 250  # 0 -> 0, 1 -> 255, not all black
    upright = by_name["rotated.jpg"][0].float()
    assert upright[:4].mean() > 200 and upright[-4:].mean() < 50  # turned as a viewer shows it: white on top


def test_video_frames_follow_their_numbers(tmp_path):
    from PIL import Image

    from byol.data.image_sets import VideoFramePairs

    (tmp_path / "clip").mkdir()
    for k in range(1, 31):
        Image.new("RGB", (8, 8), (k * 8, 0, 0)).save(tmp_path / "clip" / f"frame{k}.jpg")
    ds = VideoFramePairs(tmp_path, 8, max_frame_gap=1)
    assert [Path(f).name for f in ds.frames[:3]] == ["frame1.jpg", "frame2.jpg", "frame3.jpg"]
    assert Path(ds.frames[ds.partner(0)]).name == "frame2.jpg"  # frame1's neighbour is frame2, not frame10
    (tmp_path / "clip" / "frame2.jpg").write_bytes(b"not a jpeg")
    assert ds.decoded(1).shape == (3, 8, 8) and len(ds.bad) == 1  # a corrupt frame: its neighbour, said once


def test_stray_images_duplicates_and_run_folders_inside_the_data(tmp_path, capsys):
    from conftest import write_folder

    from byol.data.listing import list_images
    from byol.data.splits import split_held_out

    root = write_folder(tmp_path / "pets", classes=("cat", "dog"), per_class=10)
    (root / "README.jpg").write_bytes((root / "cat" / "0.png").read_bytes())
    listed = list_images(root)
    assert listed.classes == ["cat", "dog"] and len(listed) == 20  # the stray image is left out, labels kept
    assert "1 image(s) at the top level beside the class folders left out (e.g. 'README.jpg')" in capsys.readouterr().err
    for i in range(10):  # every dog is a copy of a cat: any held-out dog has a twin in training
        (root / "dog" / f"{i}.png").write_bytes((root / "cat" / f"{i}.png").read_bytes())
    rest, held = split_held_out(list_images(root), 0.3, seed=0)
    held_bytes = {(root / n).read_bytes() for n in held.items}
    assert not held_bytes & {(root / n).read_bytes() for n in rest.items}
    assert "byte-identical copies of training images" in capsys.readouterr().err
    rc, err = run(["pretrain", "--data.path", str(root), "--train.out_dir", str(root / "runs" / "x")], capsys)
    assert rc == 2 and "is inside data.path" in err and not (root / "runs").exists()


def test_damaged_archives_and_shards_are_refused_or_counted(tmp_path, capsys):
    import tarfile

    from conftest import write_folder

    from byol.data.listing import BadImages, DataError, list_images
    from byol.data.shards import ShardStream, read_samples, write_shards

    root = write_folder(tmp_path / "imgs", per_class=20, size=(32, 32))
    archive = tmp_path / "imgs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root / "a", "a")
        tar.add(root / "b", "b")
        tar.add(root / "a" / "0.png", "a/0.png")  # the same member name twice
    assert len(list_images(archive)) == 40
    assert "1 member name(s) appear more than once" in capsys.readouterr().err
    data = bytearray(archive.read_bytes())
    data[len(data) // 3:len(data) // 3 + 2048] = b"\x5a" * 2048
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="is damaged at byte"):
        list_images(archive)
    out = tmp_path / "shards"
    write_shards(root, out, 20, 0)
    shard = sorted(out.glob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[:4096] + b"\x5a" * 4096 + shard.read_bytes()[8192:])
    bad = BadImages()
    got = list(read_samples(str(shard), bad, 20))
    assert len(got) < 20 and len(bad) == 1 and "could not be read" in capsys.readouterr().err
    shard.unlink()
    with pytest.raises(DataError, match="1 of the 2 shards its index lists are missing"):
        ShardStream(str(out), 16)


def test_a_decompression_bomb_is_skipped_by_every_command(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from conftest import write_folder

    root = write_folder(tmp_path / "imgs", per_class=6)
    Image.new("RGB", (60, 60)).save(root / "a" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 60 x 60 = 3600 > 2 x 500: a "decompression bomb"
    rc, err = run(["pretrain", "--data.path", str(root), "--train.batch_size", "4", "--print-config"], capsys)
    assert rc == 0 and "skipping unreadable image" in err and "bomb.png" in err, err


def test_embed_refuses_a_name_with_a_line_break_and_writes_both_files_or_neither(demo_run, tmp_path, capsys):
    from conftest import write_folder

    root = write_folder(tmp_path / "imgs", per_class=3)
    ckpt = str(demo_run / "checkpoints" / "last.ckpt")
    out = tmp_path / "e.npy"
    assert main(["embed", ckpt, str(root), "-o", str(out)]) == 0
    before = out.read_bytes(), out.with_suffix(".files.txt").read_text()
    (root / "a" / "0.png").rename(root / "a" / "two\nlines.png")
    rc, err = run(["embed", ckpt, str(root), "-o", str(out)], capsys)
    assert rc == 2 and "hold a line break" in err
    assert (out.read_bytes(), out.with_suffix(".files.txt").read_text()) == before  # both as they were


def test_damaged_run_files_are_one_line_or_left_out_of_the_report(demo_run, tmp_path, capsys):
    import shutil

    import torch

    run_dir = tmp_path / "copy"
    shutil.copytree(demo_run, run_dir)
    metrics = run_dir / "csv" / "metrics.csv"
    metrics.write_text(metrics.read_text() + "not,a,number,row\n")
    assert main(["report", str(run_dir)]) == 0  # a bad row is left out, the rest drawn, and said in the report
    assert "unreadable row(s) of the metrics left out" in (run_dir / "report.html").read_text()
    knn = json_text = (run_dir / "knn.json").read_text()
    (run_dir / "knn.json").write_text('[{"epoch": 0, "top5": 0.5}]')
    rc, err = run(["report", str(run_dir)], capsys)
    assert rc == 2 and "knn.json: entry 0 has no number for top1" in err
    (run_dir / "knn.json").write_text(json_text)
    summary = (run_dir / "summary.json").read_text()
    (run_dir / "summary.json").write_text(summary[: len(summary) // 2])
    rc, err = run(["report", str(run_dir)], capsys)
    assert rc == 2 and "summary.json is not valid JSON" in err and len(err.splitlines()) == 1
    assert knn
    ckpt = torch.load(demo_run / "checkpoints" / "last.ckpt", weights_only=True)
    for broken, says in (("garbage", "is a str, not a mapping"), ({"model": "oops"}, "no settings for section"),
                         ({"model": {"backbone": 5}}, "names no usable backbone")):
        ckpt["hyper_parameters"]["config"] = broken
        path = tmp_path / "broken.ckpt"
        torch.save(ckpt, path)
        for argv in (["export", str(path), "-o", str(tmp_path / "b.safetensors")],
                     ["embed", str(path), str(run_dir), "-o", str(tmp_path / "e.npy")]):
            rc, err = run(argv, capsys)
            assert rc == 2 and says in err and len(err.splitlines()) == 1, err


def test_run_folder_names_too_long_for_the_file_system_are_one_line(image_folder, tmp_path, capsys):
    for out in (tmp_path / ("x" * 300), tmp_path.joinpath(*["y" * 200] * 25)):
        rc, err = run(["pretrain", "--data.path", str(image_folder), "--train.out_dir", str(out)], capsys)
        assert rc == 2 and "over the 255 a name and 4096 a path may have" in err and len(err.splitlines()) == 1


def test_images_skipped_in_data_workers_are_counted_in_the_summary(tmp_path):
    """Streamed data is decoded in worker processes, whose counts the run's own process never saw."""
    import json

    from conftest import write_folder

    root = write_folder(tmp_path / "imgs", per_class=12, size=(32, 32))
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but no image")
    out = tmp_path / "run"
    argv = ["pretrain", "--data.path", str(root), "--train.out_dir", str(out), "--train.epochs", "1",
            "--data.in_memory", "false", "--data.num_workers", "1", "--train.knn_every", "0", "--log.report", "false",
            *TINY, "--train.batch_size", "8"]
    assert subprocess.run([sys.executable, "-m", "byol.cli", *argv], capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_images"] == 1 and summary["skipped_image_paths"][0].endswith("a/broken.png")


def test_the_core_embed_takes_pixels_with_a_normalisation_and_views_without():
    import torch

    from byol import BYOL, AugmentConfig
    from byol.core.augment import normalize, to_float

    from user_nets import NoBatchNorm

    model = BYOL(NoBatchNorm(), image_size=16, projection_hidden_dim=32, prediction_hidden_dim=32)
    aug = AugmentConfig()
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    views = normalize(to_float(x), aug.mean, aug.std)
    expected = model.embed(views)  # without mean/std: normalised views, as forward takes them
    torch.testing.assert_close(model.embed(x, mean=aug.mean, std=aug.std), expected)
    torch.testing.assert_close(model.embed(x.float() / 255, mean=aug.mean, std=aug.std), expected)  # was ignored
    with pytest.raises(ValueError, match="look normalised already"):
        model.embed(views, mean=aug.mean, std=aug.std)


def test_the_nan_stop_suggests_skipping_only_when_it_is_off(tmp_path):
    from torch import nn

    from byol.training.guard import NonFiniteGuard, NonFiniteLossError

    for skip, suggested in ((False, True), (True, False)):
        with pytest.raises(NonFiniteLossError) as stop:
            NonFiniteGuard(nn.Linear(2, 2), skip, str(tmp_path))._raise("the loss is nan at step 3", 0)
        assert ("--train.skip_nonfinite true" in str(stop.value)) == suggested


def test_ranks_are_compared_by_weights_and_batch_norm_statistics_only_under_sync_batchnorm():
    import types
    import warnings

    import torch
    from torch import nn

    from byol.training.monitors import TargetAgreement

    def rank_pair(module, buffers_differ: bool):
        def all_gather(x):  # what the other rank holds: the same weights, its own batch statistics
            other = x + 1 if buffers_differ and x.shape[0] == len(list(module.model.target.buffers())) else x
            return torch.stack([x, other])
        return types.SimpleNamespace(model=module.model, all_gather=all_gather, modules=module.modules)

    def module_with_target(target):  # as BYOLModule holds model.target
        module, module.model = nn.Module(), nn.Module()
        module.model.target = target
        return module

    holder = module_with_target(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
    trainer = types.SimpleNamespace(world_size=2)
    agreement = TargetAgreement()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # per-rank statistics on CPUs: no warning
        agreement.on_train_end(trainer, rank_pair(holder, buffers_differ=True))
    assert agreement.identical is True
    synced = module_with_target(nn.Sequential(nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4)))
    with pytest.warns(UserWarning, match="batch-norm statistics differ between ranks although SyncBatchNorm"):
        agreement.on_train_end(trainer, rank_pair(synced, buffers_differ=True))
