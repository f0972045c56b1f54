"""Published weights named in model.init_weights (byol.pretrained): read from the caches that
torchvision and timm use (files placed there as a user without internet would), their
classifier left out, their normalisation used and said; a failed download is one line before
any work, naming where the file comes from and where to place it."""
import json
import urllib.error

import pytest
import torch
from torch import nn

from byol import pretrained
from byol.checkpoint import load_initial_weights, save_safetensors
from byol.cli import main
from byol.core.backbones import BackboneError, build_backbone, resnet18

from conftest import TINY, write_folder

SMALL = {"stem": "cifar", "width": 0.125}  # TINY's network


def published(seed: int = 0) -> dict:
    """A state dict as torchvision and timm publish them: the network and its 1000-class classifier."""
    torch.manual_seed(seed)
    return resnet18(num_classes=1000, **SMALL).state_dict()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches, as the environment variables those libraries read name them."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def place_torchvision(state: dict) -> None:
    path = pretrained.torch_hub_checkpoints() / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)


def place_hub(repo: str, state: dict, config: dict | None = None, revision: str | None = "0123abc") -> None:
    folder = pretrained.hf_hub_cache() / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / (revision or "main")
    snapshot.mkdir(parents=True)
    save_safetensors(state, snapshot / "model.safetensors")
    if config is not None:
        (snapshot / "config.json").write_text(json.dumps(config))
    if revision:
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text(revision)


def test_torchvision_weights_from_the_torch_hub_cache_load_without_their_classifier(caches):
    state = published()
    place_torchvision(state)
    net = load_initial_weights(resnet18(**SMALL), "torchvision:resnet18.IMAGENET1K_V1")
    loaded = net.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)


def test_hub_weights_are_read_from_the_revision_main_points_to_or_a_snapshot_placed_by_hand(caches):
    place_hub("org/net", published(1))
    place_hub("org/other", published(2), revision=None)  # placed by hand: no refs/main
    for repo, seed in (("org/net", 1), ("org/other", 2)):
        net = load_initial_weights(resnet18(**SMALL), f"hf-hub:{repo}")
        assert torch.equal(net.conv1.weight, published(seed)["conv1.weight"])


def test_a_run_from_named_weights_says_them_uses_their_normalisation_and_keeps_their_stem(caches, capsys):
    place_hub("org/net", published(), {"pretrained_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}})
    data = write_folder(caches / "imgs", per_class=24, size=(32, 32))
    assert main(["pretrain", "--data.path", str(data), "--model.init_weights", "hf-hub:org/net",
                 "--print-config", *TINY]) == 0
    out = capsys.readouterr().out
    assert "model.init_weights hf-hub:org/net: read from" in out and "mean [0.5, 0.5, 0.5]" in out
    assert "augment.mean/std use" in out
    assert "augment.std: [0.25, 0.25, 0.25]" in out  # the weights' normalisation became the run's
    # 32-px images with weights: the recipe leaves the architecture (the stem) as the weights have it
    capsys.readouterr()
    place_torchvision(resnet18(num_classes=1000).state_dict())
    assert main(["pretrain", "--data.path", str(data), "--model.init_weights", "torchvision:resnet18.IMAGENET1K_V1",
                 "--print-config", "--train.batch_size", "32"]) == 0
    out = capsys.readouterr().out
    assert "model.backbone_args: {}" in out and "stem" not in out and "optim.name: sgd" in out  # the rest of the recipe
    assert "augment.mean: [0.485, 0.456, 0.406]" in out


def test_a_named_config_keeps_its_normalisation_and_the_note_says_how_to_take_the_weights(caches, capsys):
    place_torchvision(published())
    data = write_folder(caches / "imgs", per_class=24, size=(32, 32))
    assert main(["pretrain", "--config", "cifar10", "--data.path", str(data), "--model.init_weights",
                 "torchvision:resnet18.IMAGENET1K_V1", "--print-config", *TINY]) == 0
    out = capsys.readouterr().out
    assert "this run keeps augment.mean, augment.std from" in out and "--augment.mean" in out


def test_weights_that_cannot_be_fetched_are_one_line_before_any_work(caches, monkeypatch, capsys):
    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    data = write_folder(caches / "imgs", per_class=24, size=(32, 32))
    out = caches / "run"
    code = main(["pretrain", "--data.path", str(data), "--model.init_weights", "torchvision:resnet18.IMAGENET1K_V1",
                 "--train.out_dir", str(out), *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and not out.exists()
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in err[0]
    assert str(pretrained.torch_hub_checkpoints() / "resnet18-f37072fd.pth") in err[0]
    assert "name resolution" in err[0]


@pytest.mark.parametrize("source, says", [
    ("torchvision:resnet99.IMAGENET1K_V1", "torchvision:resnet50.IMAGENET1K_V2"),  # the known names
    ("hf-hub:justaname", "ORG/NAME"),
    ("missing.safetensors", "does not exist"),
])
def test_a_bad_weights_name_is_one_line(caches, capsys, source, says):
    data = write_folder(caches / "imgs", per_class=24, size=(32, 32))
    out = caches / "run"
    code = main(["pretrain", "--data.path", str(data), "--model.init_weights", source, "--train.out_dir", str(out),
                 *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and says in err[0] and not out.exists()


def test_a_hub_model_not_cached_without_huggingface_hub_says_where_to_place_it(caches, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_hub(name, *args, **kwargs):
        if name.startswith("huggingface_hub"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hub)
    with pytest.raises(pretrained.PretrainedError) as e:
        pretrained.fetch("hf-hub:timm/resnet50.a1_in1k")
    assert "pip install huggingface_hub" in str(e.value)
    assert str(pretrained.hf_hub_cache() / "models--timm--resnet50.a1_in1k") in str(e.value)


class OfflineNet(nn.Module):
    """A model class whose pretrained weights cannot be fetched, as timm's are with no connection."""

    def __init__(self, pretrained: bool = False):
        super().__init__()
        if pretrained:
            raise ConnectionError("Max retries exceeded with url: /timm/resnet50.a1_in1k")
        self.fc = nn.Linear(2, 2)


def test_a_backbone_whose_library_cannot_fetch_its_weights_is_one_line():
    assert isinstance(build_backbone("test_pretrained:OfflineNet"), OfflineNet)
    with pytest.raises(BackboneError) as e:
        build_backbone("test_pretrained:OfflineNet", pretrained=True)
    assert "Max retries" in str(e.value) and "hf-hub:ORG/NAME" in str(e.value) and "\n" not in str(e.value)


def test_a_run_from_named_weights_trains_from_them_and_records_them(caches):
    state = published()
    place_torchvision(state)
    data = write_folder(caches / "imgs", per_class=24, size=(32, 32))
    out = caches / "run"
    assert main(["pretrain", "--data.path", str(data), "--model.init_weights", "torchvision:resnet18.IMAGENET1K_V1",
                 "--train.out_dir", str(out), "--train.epochs", "1", "--train.knn_every", "0", "--log.report", "false",
                 *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert any(n.startswith("model.init_weights torchvision:resnet18.IMAGENET1K_V1: read from") for n in summary["notes"])
    from byol.checkpoint import load_backbone

    trained = load_backbone(out / "checkpoints" / "last.ckpt").state_dict()
    # one epoch of steps moves the weights a little from where they started, never back to random
    same = [k for k in trained if k.endswith("weight") and trained[k].dim() > 1]
    assert all(torch.nn.functional.cosine_similarity(trained[k].flatten(), state[k].flatten(), dim=0) > 0.9 for k in same)
