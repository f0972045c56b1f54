"""What a careful reader and a hostile user found: results that were silently wrong, tracebacks
where one line was due, and lines that said the wrong thing. Each test fails on the code that
had the fault it names."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from byol.cli import main

from conftest import TINY, write_folder


def run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err.strip()


def one_line(rc, err, *says):
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in says:
        assert text in err, err


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory):
    """A one-epoch run of the default resnet18 on grayscale images (data.channels 1)."""
    root = tmp_path_factory.mktemp("gray")
    data = write_folder(root / "imgs", per_class=16, size=(32, 32), mode="L")
    out = root / "run"
    assert main(["pretrain", "--data.path", str(data), "--data.channels", "1", "--train.out_dir", str(out),
                 "--train.epochs", "1", "--train.batch_size", "8", "--log.report", "false",
                 "--model.projection_hidden_dim", "32", "--model.prediction_hidden_dim", "32",
                 "--model.backbone_args", "{width: 0.125}", "--train.knn_every", "1", "--train.knn_k", "5"]) == 0
    return data, out


# -- one-channel networks ---------------------------------------------------------------------


def test_the_default_network_takes_the_datas_channels(gray_run):
    """--data.channels 1 with the default resnet18 was a 53-line convolution error after the plan line."""
    _, out = gray_run
    config = (out / "config.yaml").read_text()
    assert "in_channels: 1" in config
    notes = json.loads((out / "summary.json").read_text())["notes"]
    assert any("in_channels 3 -> 1" in n for n in notes)


def test_a_users_network_for_other_channels_is_one_line(tmp_path, capsys):
    data = write_folder(tmp_path / "imgs", per_class=8, size=(32, 32), mode="L")
    rc, _, err = run(["pretrain", "--data.path", str(data), "--data.channels", "1", "--model.backbone",
                      "user_nets:NoBatchNorm", "--train.out_dir", str(tmp_path / "run"), "--train.epochs", "1",
                      "--train.batch_size", "4"], capsys)
    one_line(rc, err, "cannot take images of shape (2, 1, 32, 32)", "data.channels")


@pytest.mark.parametrize("fmt", [".onnx", ".torchscript", ".pt2"])
def test_a_one_channel_network_exports_with_one_mean_and_std(fmt, gray_run, tmp_path, capsys):
    """The deployable was built with ImageNet's 3-value mean/std: 'expected input[2, 3, 32, 32]
    to have 1 channels'; metadata and hub folders said 3 values for a 1-channel input."""
    from byol.evaluation.deploy import run_export
    from byol.evaluation.saved import load_reader

    data, out = gray_run
    ckpt = str(out / "checkpoints" / "last.ckpt")
    target = tmp_path / f"net{fmt}"
    rc, said, err = run(["export", ckpt, "-o", str(target)], capsys)
    assert rc == 0, err
    assert "(batch, 1, 32, 32)" in said
    reader = load_reader(ckpt)
    assert len(reader.mean) == len(reader.std) == 1
    from byol.data.image_sets import decode_to_memory
    from byol.data.listing import list_images

    x = decode_to_memory(list_images(str(data)), 32, 1).images[:6]
    got = run_export(str(target), {".onnx": "onnx", ".torchscript": "torchscript", ".pt2": "exported-program"}[fmt],
                     x.float() / 255)
    assert float((got - reader.features(x)).abs().max()) < 1e-4


def test_a_one_channel_hub_folder_and_outside_normalisation_say_one_value(gray_run, tmp_path, capsys):
    _, out = gray_run
    ckpt = str(out / "checkpoints" / "last.ckpt")
    assert main(["export", ckpt, "--hub-folder", str(tmp_path / "hub")]) == 0
    config = json.loads((tmp_path / "hub" / "config.json").read_text())["pretrained_cfg"]
    assert config["input_size"][0] == 1 and len(config["mean"]) == len(config["std"]) == 1
    assert main(["export", ckpt, "-o", str(tmp_path / "outside.onnx"), "--normalization", "outside"]) == 0
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "outside.onnx")).metadata_props}
    assert len(json.loads(meta["mean"])) == 1


# -- exports --------------------------------------------------------------------------------


def test_onnx_of_an_operator_it_cannot_write_is_one_line_naming_the_other_formats(tmp_path, capfd):
    """A network with nn.MultiheadAttention printed 36 lines of graph, then UnsupportedOperatorError."""
    import torch.onnx


    def failing_export(model, args, path, **kwargs):
        print("graph(%images : Float(*, 3, 32, 32)):\n" * 36)
        raise torch.onnx.errors.UnsupportedOperatorError("aten::_native_multi_head_attention", 17, "")

    weights = tmp_path / "w.safetensors"
    from byol.checkpoint import export_metadata, save_safetensors
    from byol.core.backbones import resnet18

    net = resnet18(width=0.125)
    save_safetensors(net.state_dict(), weights, export_metadata({"backbone": "resnet18", "backbone_args": {"width": 0.125},
                                                                 "image_size": 32, "channels": 3}))
    original = torch.onnx.export
    torch.onnx.export = failing_export
    try:
        rc = main(["export", str(weights), "-o", str(tmp_path / "x.onnx")])
    finally:
        torch.onnx.export = original
    captured = capfd.readouterr()
    assert rc == 2 and "graph(" not in captured.out and len(captured.err.strip().splitlines()) == 1
    assert ".pt2" in captured.err and "TorchScript" in captured.err and not (tmp_path / "x.onnx").exists()


def test_a_hub_folder_export_loads_back_through_hf_hub(demo_run, tmp_path, monkeypatch, capsys):
    """The hub folder said stem: cifar in config.json, a run from hf-hub: built the ImageNet
    stem, and failed on conv1."""
    folder = tmp_path / "hub"
    assert main(["export", str(demo_run / "checkpoints" / "last.ckpt"), "--hub-folder", str(folder)]) == 0
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    snapshot = tmp_path / "hf" / "models--me--demo" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in ("model.safetensors", "config.json"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    data = write_folder(tmp_path / "imgs", per_class=8, size=(32, 32))
    out = tmp_path / "run"
    rc, said, err = run(["pretrain", "--data.path", str(data), "--model.init_weights", "hf-hub:me/demo",
                         "--train.out_dir", str(out), "--train.epochs", "1", "--train.batch_size", "8",
                         "--log.report", "false", "--train.knn_every", "0"], capsys)
    assert rc == 0, err
    assert "model.backbone_args" in said and "from its config.json" in said
    hub = json.loads((folder / "config.json").read_text())
    assert f"stem: {hub['backbone_args']['stem']}" in (out / "config.yaml").read_text()


def test_embed_maps_with_no_layer_and_a_hub_folder_over_files_are_refused(demo_run, demo_data, tmp_path, capsys):
    ckpt = str(demo_run / "checkpoints" / "last.ckpt")
    for maps in ("", ","):
        rc, _, err = run(["embed", ckpt, str(demo_data / "test"), "-o", str(tmp_path / "m.npz"), "--maps", maps],
                         capsys)
        one_line(rc, err, "names no layer")
    assert not (tmp_path / "m.npz").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    rc, _, err = run(["export", ckpt, "--hub-folder", str(mine)], capsys)
    one_line(rc, err, "holds files already")
    assert (mine / "README.md").read_text() == "my notes" and not (mine / "config.json").exists()
    rc, _, err = run(["export", ckpt, "--hub-folder", str(tmp_path / "new"), "-o", str(tmp_path / "x.onnx")], capsys)
    one_line(rc, err, "not both")


# -- named weights ------------------------------------------------------------------------


def place_hub(tmp_path, monkeypatch, config_text: str | None):
    from byol.checkpoint import save_safetensors
    from byol.core.backbones import resnet18

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    snapshot = tmp_path / "hf" / "models--org--net" / "snapshots" / "main"
    snapshot.mkdir(parents=True, exist_ok=True)
    save_safetensors(resnet18(width=0.125, stem="cifar").state_dict(), snapshot / "model.safetensors")
    if config_text is not None:
        (snapshot / "config.json").write_text(config_text)


@pytest.mark.parametrize("config_text, says", [
    (None, "ImageNet's, as a default: the model has no config.json"),
    ("{not json", "cannot be read"),
    ('{"pretrained_cfg": {}}', "has no pretrained_cfg mean and std"),
])
def test_weights_whose_normalisation_nothing_says_are_not_said_to_be_trained_with_it(config_text, says, tmp_path,
                                                                                       monkeypatch, capsys):
    place_hub(tmp_path, monkeypatch, config_text)
    data = write_folder(tmp_path / "imgs", per_class=8, size=(32, 32))
    rc, said, err = run(["pretrain", "--data.path", str(data), "--model.init_weights", "hf-hub:org/net",
                         "--model.backbone_args", "{width: 0.125, stem: cifar}", "--train.batch_size", "8",
                         "--print-config"], capsys)
    assert rc == 0, err
    assert says in said and "trained with" not in said


def test_weights_with_an_unusable_normalisation_are_one_line(tmp_path, monkeypatch, capsys):
    place_hub(tmp_path, monkeypatch, json.dumps({"pretrained_cfg": {"mean": [0.5] * 3, "std": [0, 0, 0]}}))
    data = write_folder(tmp_path / "imgs", per_class=8, size=(32, 32))
    rc, _, err = run(["pretrain", "--data.path", str(data), "--model.init_weights", "hf-hub:org/net",
                      "--print-config"], capsys)
    one_line(rc, err, "config.json gives mean", "std [0.0, 0.0, 0.0]")


@pytest.mark.parametrize("make, says", [("folder", "is a folder"), ("fifo", "is a FIFO"), ("device", "a device")])
def test_init_weights_that_are_no_file_say_what_they_are(make, says, tmp_path, capsys):
    """A folder, /dev/zero or a FIFO was said to "not exist"."""
    target = {"folder": tmp_path, "device": Path("/dev/zero"), "fifo": tmp_path / "pipe"}[make]
    if make == "fifo":
        os.mkfifo(target)
    data = write_folder(tmp_path / "imgs", per_class=4)
    rc, _, err = run(["pretrain", "--data.path", str(data), "--model.init_weights", str(target),
                      "--train.out_dir", str(tmp_path / "run")], capsys)
    one_line(rc, err, says)


# -- precision ----------------------------------------------------------------------------


def test_precision_chosen_by_the_environment_says_so():
    """BYOL_CPU_BF16=0 on an AVX-512 BF16 CPU printed 'this CPU has no AVX-512 BF16 or AMX'."""
    from conftest import make_facts

    from byol.training.plan import choose_precision

    bf16_cpu, avx2_cpu = make_facts(cpu_bf16=True).hardware, make_facts(cpu_bf16=False).hardware
    forced = make_facts(cpu_bf16=True, forced="0").hardware
    assert choose_precision("auto", False, forced) == ("32-true", "auto: BYOL_CPU_BF16=0 in the environment chose fp32")
    assert choose_precision("auto", False, bf16_cpu)[1].startswith("auto: this CPU multiplies bf16")
    assert "has no AVX-512 BF16" in choose_precision("auto", False, avx2_cpu)[1]
    assert choose_precision("32", False, bf16_cpu) == ("32-true", "train.precision 32")


# -- configs that meant something else ---------------------------------------------------


def test_a_backbone_held_for_the_whole_run_is_refused(tmp_path, capsys):
    """--optim.backbone_held_epochs 5 with --train.epochs 2: the backbone never trained, silently."""
    data = write_folder(tmp_path / "imgs", per_class=4)
    for held in ("2", "5", "1e9"):
        rc, _, err = run(["pretrain", "--data.path", str(data), "--train.epochs", "2", "--optim.backbone_held_epochs",
                          held, "--train.out_dir", str(tmp_path / "run")], capsys)
        one_line(rc, err, "optim.backbone_held_epochs", "must be below train.epochs (2)")


@pytest.mark.parametrize("key, value", [("augment.std", "[0, 0, 0]"), ("augment.std", "[-0.2, 0.2, 0.2]"),
                                        ("augment.std", "[58.4, 57.1, 57.4]"), ("augment.mean", "[124, 116, 104]")])
def test_a_normalisation_off_the_pixel_scale_is_refused(key, value, tmp_path, capsys):
    data = write_folder(tmp_path / "imgs", per_class=4)
    rc, _, err = run(["pretrain", "--data.path", str(data), f"--{key}", value, "--print-config"], capsys)
    one_line(rc, err, key, "[0, 1] scale")


def test_the_same_keys_give_the_same_run_from_a_dict_and_from_a_file(tmp_path, capsys):
    """A dict got the recipe for 32-px data; the same keys in a YAML file kept LARS, the ImageNet
    stem and a 10-epoch warm-up in a 1-epoch run, with no note."""
    from byol.config import as_config, to_dict
    from byol.training.pretrain import plan_run

    data = write_folder(tmp_path / "imgs", per_class=8, size=(32, 32))
    values = {"data": {"path": str(data)}, "train": {"epochs": 1, "batch_size": 8}}
    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps(values))
    from_dict = plan_run(as_config(values)).cfg
    from_file = plan_run(as_config(str(path))).cfg
    assert to_dict(from_dict) == to_dict(from_file)
    assert from_file.optim.name == "sgd" and from_file.model.backbone_args.get("stem") == "cifar"


def test_a_packaged_recipe_keeps_its_warmup_and_says_it_outlasts_the_run(tmp_path, capsys, monkeypatch):
    import byol.training.pretrain

    # the cost line's probe steps on a ResNet-50 at 224 px take half a minute here; the warm-up is what is asked
    monkeypatch.setattr(byol.training.pretrain, "probe_seconds", lambda plan, model: [1.0, 2.0])
    data = write_folder(tmp_path / "imgs", per_class=8, size=(32, 32))
    rc, said, err = run(["pretrain", "--config", "imagenet", "--data.dataset", "folder", "--data.path", str(data),
                         "--train.epochs", "1", "--data.large_images", "resize", "--train.batch_size", "8",
                         "--train.devices", "1", "--train.num_nodes", "1", "--print-config"], capsys)
    assert rc == 0, err
    assert "optim.warmup_epochs: 10" in said and "not shorter than the run's 1 epoch" in said


# -- the cache ---------------------------------------------------------------------------


def photo(path: Path, seed: int, size=(60, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


def test_a_cache_is_not_made_inside_its_source_nor_in_a_file_and_its_quality_is_a_quality(tmp_path, capsys):
    src = tmp_path / "imgs"
    for i in range(3):
        photo(src / "a" / f"{i}.jpg", i)
    rc, _, err = run(["cache", str(src), str(src / "cache")], capsys)
    one_line(rc, err, "inside the source folder")
    assert not (src / "cache").exists()
    (tmp_path / "file").write_text("x")
    rc, _, err = run(["cache", str(src), str(tmp_path / "file")], capsys)
    one_line(rc, err, "is a file")
    for quality in ("-5", "0", "500"):
        rc, _, err = run(["cache", str(src), str(tmp_path / "c"), "--quality", quality], capsys)
        one_line(rc, err, f"--quality {quality}")


def test_a_cache_run_again_follows_the_sources(tmp_path):
    """A re-run trusted what was there: a deleted source kept its copy (121 images for 119), a
    moved one was under both labels, a replaced one kept its old picture."""
    from byol.data.cache import write_cache
    from byol.data.listing import list_images

    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(4):
        photo(src / "a" / f"{i}.jpg", i)
        photo(src / "b" / f"{i}.jpg", 10 + i)
    write_cache(src, dst, 32)
    (src / "a" / "0.jpg").unlink()
    (src / "a" / "1.jpg").rename(src / "b" / "moved.jpg")
    photo(src / "b" / "2.jpg", 99, size=(64, 48))
    os.utime(src / "b" / "2.jpg", ns=(1, 1))  # a replacement, whatever its clock says
    state = write_cache(src, dst, 32)
    assert state["removed"] == 2 and sorted(list_images(dst).items) == sorted(list_images(src).items)
    assert Image.open(dst / "b" / "2.jpg").size == (32, 24)  # made again from the new picture
    assert state["kept"] == 5 and state["resized"] == 2


def test_the_cache_counts_every_file_it_leaves_out(tmp_path):
    """The marker counted decode failures only (1 of 3 files left out)."""
    from byol.data.cache import write_cache

    src = tmp_path / "src"
    for i in range(3):
        photo(src / "a" / f"{i}.jpg", i)
        photo(src / "b" / f"{i}.jpg", i)
    (src / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    (src / "b" / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    photo(src / "stray.jpg", 7)
    state = write_cache(src, tmp_path / "dst", 32)
    assert state["skipped"] == 3
    assert json.loads((tmp_path / "dst" / "byol-cache.json").read_text())["skipped"] == 3


# -- skipped files in a run's summary --------------------------------------------------


def test_every_image_left_out_is_counted_in_the_summary(tmp_path):
    """A dangling link, a FIFO and a stray top-level image were said on stderr but counted 0 in
    summary.json; a held-out copy of a training image likewise in skipped_held_out_images."""
    data = write_folder(tmp_path / "imgs", per_class=20, size=(32, 32))
    (data / "a" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    os.mkfifo(data / "b" / "pipe.png")
    (data / "stray.png").write_bytes((data / "a" / "0.png").read_bytes())
    for i in range(20):  # every b image copied into a: some copy lands held out, its twin trained on
        (data / "a" / f"copy{i}.png").write_bytes((data / "b" / f"{i}.png").read_bytes())
    out = tmp_path / "run"
    assert main(["pretrain", "--data.path", str(data), "--train.out_dir", str(out), "--train.epochs", "1",
                 *TINY, "--train.batch_size", "8", "--log.report", "false", "--train.knn_every", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    paths = summary["skipped_image_paths"]
    assert summary["skipped_images"] == 3 and any("dangling" in p for p in paths) and any("pipe" in p for p in paths)
    assert any(p.endswith("stray.png") for p in paths)
    assert summary["skipped_held_out_images"] >= 1


# -- one line where a traceback was -------------------------------------------------------


def test_download_into_a_file_or_an_unmakeable_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for root in (tmp_path / "file", Path("/proc/byol-dl")):
        rc, _, err = run(["download", "mnist", "--root", str(root)], capsys)
        one_line(rc, err, f"--root {str(root)!r}")


def test_download_with_a_wrong_archive_in_place_says_it_is_wrong(tmp_path, capsys, monkeypatch):
    """A wrong-MD5 archive in place was met with 'copy the archive there'."""
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"something else")
    rc, _, err = run(["download", "cifar10", "--root", str(tmp_path)], capsys)
    one_line(rc, err, "is there, but its MD5 is", "Replace it")


def test_logistic_regression_with_one_image_of_a_class_is_one_line(demo_run, tmp_path, capsys):
    """LBFGS raised an IndexError."""
    train = write_folder(tmp_path / "train", classes=("a", "b"), per_class=1, size=(32, 32))
    test = write_folder(tmp_path / "test", classes=("a", "b"), per_class=2, size=(32, 32))
    rc, _, err = run(["evaluate", "logistic", "--checkpoint", str(demo_run / "checkpoints" / "last.ckpt"),
                      "--train", str(train), "--test", str(test), "-o", str(tmp_path / "r.json")], capsys)
    one_line(rc, err, "at least 2 training images", "'a'")
