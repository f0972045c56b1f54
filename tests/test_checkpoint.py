import pytest
import torch

from byol.core.backbones import build_backbone, resnet18
from byol.checkpoint import CheckpointError, atomic_save, load_into


def test_atomic_save_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_save({"a": torch.ones(2)}, path)

    def broken(obj, f, *a, **k):  # f: the open temporary file
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        atomic_save({"a": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_load_into_names_the_mismatch():
    small = resnet18(stem="cifar", width=0.25)
    with pytest.raises(CheckpointError, match="another shape .*conv1.weight.*another backbone"):
        load_into(resnet18(stem="cifar", width=0.5), small.state_dict(), "x.ckpt")


def test_user_backbone_by_import_path():
    net = build_backbone("torch.nn:Linear", in_features=3, out_features=2)
    assert isinstance(net, torch.nn.Linear)
    with pytest.raises(ValueError, match="neither a built-in"):
        build_backbone("resnet19")
    with pytest.raises(ValueError, match="cannot import 'no_such_pkg.models'"):
        build_backbone("no_such_pkg.models:Net")


def test_safetensors_files_follow_the_umask(tmp_path):
    import os
    import stat

    from byol.checkpoint import save_safetensors

    old = os.umask(0o022)
    try:
        save_safetensors({"w": torch.zeros(2)}, tmp_path / "a.safetensors")
        os.umask(0o077)
        save_safetensors({"w": torch.zeros(2)}, tmp_path / "b.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.safetensors").stat().st_mode) == 0o600
