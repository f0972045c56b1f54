"""Any backbone: a transformer's tokens pooled over tokens, timm and torchvision by import path, the
user's own module from the current folder."""
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from byol import BYOL
from byol.cli import main
from byol.core.backbones import BackboneError, build_backbone
from byol.core.model import feature_extractor

from test_cli import TINY
from user_nets import TinyViT

BYOL_SCRIPT = Path(sys.executable).parent / "byol"


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_token_outputs_are_pooled_over_tokens_never_over_features(pool):
    torch.manual_seed(0)
    vit = TinyViT(dim=24).eval()
    x = torch.randn(3, 3, 32, 32)
    tokens = {}
    vit.ln.register_forward_hook(lambda m, i, out: tokens.setdefault("ln", out))
    features = feature_extractor(vit, "ln", pool)(x)
    expected = tokens["ln"][:, 0] if pool == "cls" else tokens["ln"].mean(dim=1)
    assert tokens["ln"].shape == (3, 17, 24) and features.shape == (3, 24)
    assert torch.allclose(features, expected)
    assert BYOL(TinyViT(dim=24), hidden_layer="ln", image_size=32, token_pool=pool,
                projection_hidden_dim=32, prediction_hidden_dim=32).feature_dim == 24
    with pytest.raises(ValueError, match="token_pool"):
        feature_extractor(vit, "ln", "max")


def test_a_vit_trains_embeds_to_its_width_and_exports(demo_data, tmp_path, capsys):
    out = tmp_path / "vit"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--data.val_path", str(demo_data / "test"),
                 "--train.out_dir", str(out), "--train.epochs", "1", "--train.knn_every", "1", "--log.report", "false",
                 *TINY, "--model.backbone", "user_nets:TinyViT", "--model.backbone_args", "{dim: 24}",
                 "--model.hidden_layer", "ln", "--model.token_pool", "cls"]) == 0
    ckpt = str(out / "checkpoints" / "last.ckpt")
    assert main(["embed", ckpt, str(demo_data / "test"), "-o", str(tmp_path / "e.npy"),
                 "--backbone", "user_nets:TinyViT"]) == 0
    import numpy as np

    assert np.load(tmp_path / "e.npy").shape == (100, 24)  # D features per image, not per-token means
    assert main(["export", ckpt, "-o", str(tmp_path / "vit.safetensors")]) == 0
    TinyViT(dim=24).load_state_dict(load_file(str(tmp_path / "vit.safetensors")))  # strict
    from byol.checkpoint import read_export_metadata

    assert read_export_metadata(tmp_path / "vit.safetensors")["token_pool"] == "cls"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--model.token_pool", "max",
                 "--train.out_dir", str(tmp_path / "bad")]) == 2
    assert "model.token_pool" in capsys.readouterr().err


def test_timm_by_import_path_and_short_form(monkeypatch):
    calls = []

    def create_model(model_name, pretrained=False, num_classes=1000, **kwargs):
        calls.append({"model_name": model_name, "pretrained": pretrained, "num_classes": num_classes, **kwargs})
        return TinyViT(dim=24)

    create_model.__module__ = "timm.models._factory"  # where timm's own is defined: a model library's factory
    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model,
                                                                  is_model=lambda name: name.startswith("vit_")))
    build_backbone("timm:create_model", model_name="vit_tiny_patch16_224", num_classes=0)
    build_backbone("timm:vit_tiny_patch16_224", img_size=32)  # short form: no classifier, not pretrained
    assert calls == [{"model_name": "vit_tiny_patch16_224", "pretrained": False, "num_classes": 0},
                     {"model_name": "vit_tiny_patch16_224", "pretrained": False, "num_classes": 0, "img_size": 32}]


def test_real_timm_vit_when_installed():
    timm = pytest.importorskip("timm", reason="timm is not installed (pip install 'byol[timm]')")
    net = build_backbone("timm:vit_tiny_patch16_224", img_size=32, patch_size=8)
    assert BYOL(net, image_size=32, projection_hidden_dim=32, prediction_hidden_dim=32).feature_dim == 192
    assert timm is not None


def test_torchvision_resnet_by_import_path_when_installed():
    try:
        import torchvision  # noqa: F401  (does not import beside some CPU builds of torch)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"torchvision cannot be imported here ({type(e).__name__})")
    net = build_backbone("torchvision.models:resnet18")
    assert BYOL(net, hidden_layer="avgpool", image_size=32, projection_hidden_dim=32,
                prediction_hidden_dim=32).feature_dim == 512


def test_byol_layers_finds_a_users_module_in_the_current_folder(tmp_path):
    (tmp_path / "mynets.py").write_text((Path(__file__).parent / "user_nets.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = subprocess.run([str(BYOL_SCRIPT), "layers", "mynets:TinyViT"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert "ln" in found.stdout.split() and "(1, 17, 24)" in found.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = subprocess.run([str(BYOL_SCRIPT), "layers", "mynets:TinyViT"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert lost.returncode == 2 and len(lost.stderr.strip().splitlines()) == 1
    assert "No module named 'mynets'" in lost.stderr and "PYTHONPATH" in lost.stderr
    with pytest.raises(BackboneError, match="PYTHONPATH"):
        build_backbone("no_such_module_here:Net")
