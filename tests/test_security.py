"""A config file, a run folder, a cache folder or a model cache that someone else prepared may not
write a file outside its place, run code, or read a file it names. Each test proves that nothing
was written (marker files, a victim file's contents) and that the refusal is one line."""
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from byol.cli import main

from conftest import TINY, write_folder


def run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.err.strip()


# -- what a backbone name may call ----------------------------------------------------------


@pytest.fixture
def fake_timm(tmp_path, monkeypatch):
    """A stand-in for timm with its registry (create_model, is_model, model_entrypoint) and two
    of its functions that write files, each leaving a line in the marker file when it runs."""
    site, marker = tmp_path / "site", tmp_path / "MARKER"
    (site / "timm" / "models").mkdir(parents=True)
    (site / "timm" / "utils").mkdir()
    (site / "timm" / "__init__.py").write_text(textwrap.dedent(f"""
        from torch import nn
        MARKER = {str(marker)!r}
        def touch(what):
            with open(MARKER, "a") as f:
                f.write(what + "\\n")
        class Tiny(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3)
            def forward(self, x):
                return self.conv(x).mean((2, 3))
        def tiny_net(pretrained=False, **kwargs):
            return Tiny()
        def create_model(model_name, pretrained=False, checkpoint_path="", pretrained_cfg_overlay=None, **kwargs):
            if checkpoint_path:
                touch("read " + checkpoint_path)
                import torch
                torch.load(checkpoint_path, weights_only=True)  # as timm loads one: a payload fails here
            if pretrained_cfg_overlay:
                touch("overlay " + repr(pretrained_cfg_overlay))
            return Tiny()
        def is_model(name):
            return name == "tiny_net"
        def list_models():
            return ["tiny_net"]
        from . import models
    """))
    (site / "timm" / "models" / "__init__.py").write_text(textwrap.dedent("""
        from timm import is_model, tiny_net
        def model_entrypoint(name):
            return tiny_net
    """))
    (site / "timm" / "models" / "_hub.py").write_text(textwrap.dedent("""
        import os
        from timm import touch
        def download_cached_file(url, cache_dir="."):
            touch("download " + url)
            open(os.path.join(cache_dir, "x"), "w").write("written")
    """))
    (site / "timm" / "utils" / "__init__.py").write_text("")
    (site / "timm" / "utils" / "summary.py").write_text(textwrap.dedent("""
        def update_summary(epoch, train_metrics, eval_metrics, filename, **kwargs):
            open(filename, "w").write("epoch,loss\\n")
    """))
    monkeypatch.syspath_prepend(str(site))
    yield marker
    for name in [n for n in sys.modules if n == "timm" or n.startswith("timm.")]:
        del sys.modules[name]


def pretrain_with(config: Path, data: Path, out: Path, capsys) -> tuple[int, str]:
    return run(["pretrain", "--config", str(config), "--data.path", str(data), "--train.out_dir", str(out),
                "--train.epochs", "1", "--train.batch_size", "4", "--log.report", "false"], capsys)


def test_a_config_cannot_call_a_library_function_that_writes_files(tmp_path, capsys, fake_timm):
    """byol.checkpoint:atomic_write_text wrote the file (and a .pth in site-packages runs at the
    next start of Python) before the run failed on what it returned; byol.cli.main:main ran a
    command; timm's download_cached_file and update_summary write anywhere. None is a model
    builder: each is refused before it is called."""
    data = write_folder(tmp_path / "imgs", per_class=8)
    outside = tmp_path / "outside"
    outside.mkdir()
    routes = [
        ("byol.checkpoint:atomic_write_text", {"path": str(outside / "evil.pth"), "text": "import os"}),
        ("byol.cli.main:main", {"argv": ["cache", str(data), str(outside / "copy")]}),
        ("timm.models._hub:download_cached_file", {"url": "http://127.0.0.1:9/x", "cache_dir": str(outside)}),
        ("timm.utils.summary:update_summary", {"epoch": 0, "train_metrics": {}, "eval_metrics": {},
                                               "filename": str(outside / "summary.csv")}),
        ("byol.core.augment:IMAGENET_MEAN.count", {}),  # a method of a value: no builder either
    ]
    for i, (backbone, args) in enumerate(routes):
        config = tmp_path / f"shared{i}.yaml"
        config.write_text(json.dumps({"model": {"backbone": backbone, "backbone_args": args}}))
        rc, err = pretrain_with(config, data, tmp_path / f"run{i}", capsys)
        assert rc == 2 and len(err.splitlines()) == 1 and "not an nn.Module class or a registered model builder" in err
        assert "it was not called" in err, err
    assert list(outside.iterdir()) == [] and not fake_timm.exists()


def test_a_config_cannot_name_a_file_for_a_builder_to_read_and_the_command_line_can(tmp_path, capsys, fake_timm):
    """timm's create_model reads checkpoint_path and pretrained_cfg_overlay's file: a config file
    naming one is refused, one line, before the builder runs; the same argument typed on the
    command line is the user's own and runs."""
    data = write_folder(tmp_path / "imgs", per_class=8)
    payload = tmp_path / "payload.pth"
    payload.write_bytes(b"not weights")
    for i, args in enumerate(({"checkpoint_path": "payload.pth"}, {"pretrained_cfg_overlay": {"file": str(payload)}},
                              {"weights": str(payload)})):
        config = tmp_path / f"shared{i}.yaml"
        config.write_text(json.dumps({"model": {"backbone": "timm:tiny_net", "backbone_args": args}}))
        rc, err = pretrain_with(config, data, tmp_path / f"run{i}", capsys)
        assert rc == 2 and len(err.splitlines()) == 1 and "names a file, folder or URL" in err, err
        assert str(config) in err and "on the command line" in err
    assert not fake_timm.exists()
    rc, err = run(["layers", "timm:tiny_net", "--args", f"{{checkpoint_path: {payload}}}"], capsys)
    assert fake_timm.read_text() == f"read {payload}\n"  # the command line is the user's own: it was called
    assert rc == 2 and len(err.splitlines()) == 1 and "failed to build" in err  # and its failure is one line
    rc, err = run(["layers", "timm:create_model", "--args", "{model_name: not_a_model}"], capsys)
    assert rc == 2 and "'not_a_model' is not one of timm's models" in err


def test_a_registered_builder_and_a_module_class_are_built(fake_timm):
    from byol.core.backbones import build_backbone

    assert type(build_backbone("timm:tiny_net")).__name__ == "Tiny"
    assert type(build_backbone("timm:create_model", model_name="tiny_net")).__name__ == "Tiny"
    assert type(build_backbone("timm.models:tiny_net")).__name__ == "Tiny"  # a registered entrypoint
    assert type(build_backbone("byol.core.backbones:resnet18", width=0.125)).__name__ == "ResNet"
    assert type(build_backbone("torch.nn:Identity")).__name__ == "Identity"


def test_a_builder_that_fails_is_one_line(tmp_path, capsys, monkeypatch):
    """timm's create_model refusing a payload (an UnpicklingError) was 39 lines of traceback."""
    (tmp_path / "failing_nets.py").write_text(textwrap.dedent("""
        from torch import nn
        class Refuses(nn.Module):
            def __init__(self):
                raise RuntimeError("Weights only load failed: unsupported global posix.system")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    rc, err = run(["layers", "failing_nets:Refuses"], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and "failed to build" in err and "posix.system" in err


# -- the run folder ------------------------------------------------------------------------


def tiny_run(data: Path, out: Path, *extra) -> list[str]:
    return ["pretrain", "--data.path", str(data), "--train.out_dir", str(out), "--train.epochs", "1",
            "--train.knn_every", "0", "--log.report", "false", *TINY, "--train.batch_size", "4", *extra]


def test_the_run_lock_is_never_followed_out_of_the_run_folder(tmp_path, capsys):
    """The lock was opened through a link and truncated: the file it pointed to lost its
    contents. A link, a folder or a FIFO in its place is one line; the file is untouched."""
    data = write_folder(tmp_path / "imgs", per_class=4)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".byol-run.lock").symlink_to(victim)
    rc, err = run(tiny_run(data, out), capsys)
    assert rc == 2 and ".byol-run.lock" in err and "symbolic link" in err and len(err.splitlines()) == 1
    assert victim.read_text() == "keep me"
    for kind, make in (("a folder", os.mkdir), ("a FIFO", os.mkfifo)):
        other = tmp_path / f"run-{kind[2:]}"
        other.mkdir()
        make(other / ".byol-run.lock")
        rc, err = run(tiny_run(data, other), capsys)
        assert rc == 2 and kind in err and len(err.splitlines()) == 1, err


def test_a_run_subfolder_that_is_a_link_is_refused(tmp_path, capsys):
    """checkpoints/ as a link sent last.ckpt outside the run without a word."""
    data = write_folder(tmp_path / "imgs", per_class=4)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for sub in ("checkpoints", "csv", ".skipped"):
        out = tmp_path / f"run-{sub}"
        out.mkdir()
        (out / sub).symlink_to(elsewhere, target_is_directory=True)
        rc, err = run(tiny_run(data, out), capsys)
        assert rc == 2 and sub in err and "symbolic link" in err and len(err.splitlines()) == 1, err
    assert list(elsewhere.iterdir()) == []


def test_a_checkpoint_written_while_the_data_was_read_is_found_once_the_lock_is_held(tmp_path, capsys, monkeypatch):
    """The "a checkpoint is there and --resume was not given" check ran before the lock was held
    and never again: a run started beside another could overwrite the checkpoint it wrote."""
    from byol.training import pretrain as pretrain_module

    data = write_folder(tmp_path / "imgs", per_class=4)
    out = tmp_path / "run"
    real = pretrain_module.build_data

    def reading_while_another_run_saves(plan):
        result = real(plan)
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints" / "last.ckpt").write_bytes(b"the other run's checkpoint")
        return result

    monkeypatch.setattr(pretrain_module, "build_data", reading_while_another_run_saves)
    rc, err = run(tiny_run(data, out), capsys)
    assert rc == 2 and "already holds a checkpoint" in err
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == b"the other run's checkpoint"


# -- the cache and the model caches ---------------------------------------------------------


def test_an_unfinished_cache_with_a_linked_class_folder_writes_nothing_outside(tmp_path, capsys):
    from byol.data.cache import write_cache

    src = write_folder(tmp_path / "src", per_class=3)
    dst = tmp_path / "dst"
    write_cache(src, dst, 16)
    outside = tmp_path / "outside"
    outside.mkdir()
    for item in (dst / "a").iterdir():
        item.unlink()
    (dst / "a").rmdir()
    (dst / "a").symlink_to(outside, target_is_directory=True)
    rc, err = run(["cache", str(src), str(dst), "--max-side", "16"], capsys)
    assert rc == 2 and "symbolic link" in err and len(err.splitlines()) == 1
    assert list(outside.iterdir()) == []


def test_a_hub_cache_revision_that_leaves_the_model_folder_is_refused(tmp_path, monkeypatch):
    """refs/main holding ../../../outside/x loaded weights from outside the model's folder."""
    import torch

    from byol import pretrained
    from byol.checkpoint import load_initial_weights, save_safetensors
    from byol.core.backbones import resnet18

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    outside = tmp_path / "outside" / "x"
    outside.mkdir(parents=True)
    save_safetensors(resnet18(width=0.125).state_dict(), outside / "model.safetensors")
    folder = tmp_path / "hf" / "models--org--net"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("../../../outside/x")
    with pytest.raises(pretrained.PretrainedError, match="no revision"):
        load_initial_weights(resnet18(width=0.125), "hf-hub:org/net")
    assert torch.is_tensor(resnet18(width=0.125).conv1.weight)
