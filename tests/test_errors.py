"""Bad input gets one clear line naming the thing and what to do, and leaves nothing behind."""
import os
import subprocess
from pathlib import Path

import pytest

from byol.cli import main

from conftest import TINY, write_folder


def run(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.fixture
def read_only_dir(tmp_path):
    """A real read-only folder: permissions for a normal user, a read-only bind mount for root."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        yield target
        target.chmod(0o755)
        return
    source = tmp_path / "ro-source"
    source.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(target)], capture_output=True).returncode:
        pytest.skip("running as root and a read-only bind mount is not allowed here")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)


@pytest.fixture
def full_disk(tmp_path):
    """A real, tiny file system (a 16 KiB tmpfs, as root): anything bigger fills it."""
    target = tmp_path / "small"
    target.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(target)],
                                           capture_output=True).returncode:
        pytest.skip("a small tmpfs needs root and mount here")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)


def test_outputs_go_to_new_folders_and_unwritable_ones_are_one_line(demo_run, demo_data, tmp_path, read_only_dir,
                                                                    capsys):
    ckpt, test = str(demo_run / "checkpoints" / "last.ckpt"), str(demo_data / "test")
    assert main(["export", ckpt, "-o", str(tmp_path / "new" / "b.safetensors")]) == 0
    assert main(["embed", ckpt, test, "-o", str(tmp_path / "new2" / "e.npy")]) == 0
    assert (tmp_path / "new" / "b.safetensors").is_file() and (tmp_path / "new2" / "e.npy").is_file()
    capsys.readouterr()
    knn = ["evaluate", "knn", "--checkpoint", ckpt, "--train", str(demo_data / "train"), "--test", test, "-k", "5"]
    for argv in (["export", ckpt, "-o", str(read_only_dir / "b.safetensors")],
                 ["embed", ckpt, test, "-o", str(read_only_dir / "sub" / "e.npy")],
                 [*knn, "-o", str(read_only_dir / "r.json")],
                 ["evaluate", "linear-aug", *knn[2:], "--save-model", str(read_only_dir / "m.safetensors")]):
        rc, err = run(argv, capsys)
        assert rc == 2 and len(err.splitlines()) == 1 and "cannot be written" in err, (argv, err)
    assert not any(read_only_dir.iterdir())


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(demo_run, demo_data, full_disk, capsys):
    ckpt = str(demo_run / "checkpoints" / "last.ckpt")
    for argv in (["export", ckpt, "-o", str(full_disk / "b.safetensors")],
                 ["embed", ckpt, str(demo_data / "test"), "-o", str(full_disk / "e.npy")]):
        rc, err = run(argv, capsys)
        assert rc == 2 and len(err.splitlines()) == 1, (argv, err)
        assert "could not write" in err and "No space left" in err and "nothing was written" in err
    assert not any(full_disk.iterdir())


def test_an_embed_over_an_earlier_one_on_a_full_disk_leaves_both_earlier_files(demo_run, full_disk, tmp_path, capsys):
    """The new .npy fits where the earlier one was, its list of files does not: both are staged
    before either replaces the earlier pair, so the pair stays the earlier one."""
    ckpt, out = str(demo_run / "checkpoints" / "last.ckpt"), full_disk / "e.npy"
    assert main(["embed", ckpt, str(write_folder(tmp_path / "few", per_class=1, size=(32, 32))), "-o", str(out)]) == 0
    before = out.read_bytes(), out.with_suffix(".files.txt").read_bytes()
    many = tmp_path / "many" / "a"
    many.mkdir(parents=True)
    for i in range(20):  # 20 rows of 64 floats: a 2-page .npy; 20 names of 200 bytes: a list over one page
        (many / f"{i:03d}{'x' * 196}.png").write_bytes((tmp_path / "few" / "a" / "0.png").read_bytes())
    page = os.statvfs(full_disk).f_frsize
    (full_disk / "filler").write_bytes(b"\0" * (os.statvfs(full_disk).f_bavail * page - 2 * page))
    rc, err = run(["embed", ckpt, str(many.parent), "-o", str(out)], capsys)
    assert rc == 2 and "No space left" in err and "nothing was written" in err
    assert (out.read_bytes(), out.with_suffix(".files.txt").read_bytes()) == before  # the pair stays a pair
    assert sorted(p.name for p in full_disk.iterdir()) == ["e.files.txt", "e.npy", "filler"]


@pytest.mark.parametrize("sub", ["", "new/run"])
def test_read_only_output_folder_is_one_line(demo_data, read_only_dir, capsys, sub):
    out = read_only_dir / sub if sub else read_only_dir
    rc, err = run(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                   "--train.epochs", "1", *TINY], capsys)
    assert rc == 2 and len(err.splitlines()) == 1
    assert "train.out_dir" in err and "cannot write" in err and "--train.out_dir" in err
    assert list(read_only_dir.iterdir()) == []


def test_malformed_yaml_on_the_command_line_is_one_line(capsys):
    rc, err = run(["pretrain", "--data.path", "x", "--model.backbone_args", "{width: 0.25"], capsys)
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--model.backbone_args" in err and "not valid YAML" in err


def test_out_of_range_values_name_the_command_line(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train: {epochs: 3}\n")
    rc, err = run(["pretrain", "--config", str(config), "--data.path", "x", "--optim.base_lr", "-1"], capsys)
    assert rc == 2 and err.startswith("byol pretrain: error: command line: optim.base_lr = -1.0")
    config.write_text("train: {epochs: -3}\n")
    rc, err = run(["pretrain", "--config", str(config), "--data.path", "x"], capsys)
    assert rc == 2 and f"{config}: train.epochs = -3" in err


def test_integer_hidden_layer_from_the_command_line(demo_data, tmp_path):
    out = tmp_path / "run"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--model.hidden_layer", "-2",
                 "--train.epochs", "1", "--train.knn_every", "0", "--train.out_dir", str(out),
                 "--log.report", "false", *TINY]) == 0
    assert "hidden_layer: -2" in (out / "config.yaml").read_text()


def test_a_failed_start_leaves_no_files(demo_data, tmp_path, capsys):
    out = tmp_path / "run"
    rc, err = run(["pretrain", "--data.path", str(demo_data / "train"), "--model.hidden_layer", "nolayer",
                   "--train.out_dir", str(out), *TINY], capsys)
    assert rc == 2 and "nolayer" in err and not out.exists()
    custom = tmp_path / "custom"
    write_folder(custom / "train")
    write_folder(custom / "test")
    rc, err = run(["--run-type", "fine_tune", "--dataset-type", "custom", "--dataset-path", str(custom),
                   "--model-path", str(tmp_path / "missing.ckpt"), "--model-output-folder-path", str(tmp_path / "ft")],
                  capsys)
    assert rc == 2 and "missing.ckpt" in err and not (tmp_path / "ft").exists()


def test_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "notes.ckpt"
    bad.write_text("hello")
    rc, err = run(["export", str(bad), "-o", str(tmp_path / "x.safetensors")], capsys)
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"{str(bad)!r} is not a byol checkpoint or safetensors file" in err
    assert "weights_only" not in err
    assert not (tmp_path / "x.safetensors").exists()


def test_the_console_shows_what_the_user_needs(demo_data, tmp_path, capfd):
    argv = ["pretrain", "--data.path", str(demo_data / "train"), "--data.val_path", str(demo_data / "test"),
            "--train.epochs", "1", "--train.out_dir", str(tmp_path / "run"), "--log.report", "false", *TINY]
    argv[argv.index("--log.progress") + 1] = "true"
    assert main(argv) == 0
    out = capfd.readouterr()
    text = out.out + out.err
    assert "litlogger" not in text and "v_num" not in text and "Tip" not in text
    assert any(v in text for v in ("Pretraining helped", "No clear change from pretraining",
                                   "Pretraining made the features worse"))  # the verdict
    assert "precision: fp32" in text  # the probe answers 'no fast bf16' in the suite (conftest)


def test_checkpoints_are_not_staged_through_tmpdir(demo_data, tmp_path, read_only_dir, monkeypatch):
    # a small or read-only $TMPDIR looked like a full output disk: checkpoints went through it
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(read_only_dir))
    out = tmp_path / "run"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out),
                 "--train.epochs", "1", "--train.knn_every", "0", "--log.report", "false", *TINY]) == 0
    assert (out / "checkpoints" / "last.ckpt").is_file() and not any(read_only_dir.iterdir())


def test_malformed_yaml_is_one_line_with_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "my.yaml"
    bad.write_text("model:\n  backbone: [resnet18\n  width: 1\n")
    rc, err = run(["pretrain", "--config", str(bad), "--data.path", str(tmp_path)], capsys)
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"{bad}: not valid YAML at line 3, column 8" in err and "<unicode string>" not in err
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("data: {path: [x\n")
    rc, err = run(["report", str(run_dir)], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "config.yaml: not valid YAML at line 2" in err


def test_unreadable_held_out_images_are_counted_in_the_summary(demo_data, tmp_path):
    import json
    import shutil

    held = tmp_path / "held"
    shutil.copytree(demo_data / "test", held)
    next(held.iterdir()).joinpath("broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "run"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--data.val_path", str(held),
                 "--train.epochs", "1", "--train.out_dir", str(out), "--log.report", "false", *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_held_out_images"] == 1 and summary["skipped_held_out_paths"][0].endswith("broken.png")
    assert summary["skipped_images"] == 0


def test_a_raw_pickle_is_refused_in_one_line_without_torchs_warning(tmp_path, capsys):
    import pickle
    import warnings

    import torch

    bad = tmp_path / "raw.ckpt"
    bad.write_bytes(pickle.dumps({"state_dict": {"w": torch.zeros(1)}, "x": Path(".")}))  # a class: not weights-only
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rc, err = run(["export", str(bad), "-o", str(tmp_path / "x.safetensors")], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "is not a byol checkpoint" in err
    assert not seen, [str(w.message) for w in seen]
