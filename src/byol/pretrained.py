"""Named pretrained weights for `model.init_weights`: where they come from, where they are
cached, and the normalisation they were trained with.

    torchvision:resnet50.IMAGENET1K_V2   torchvision's published ResNet weights (TORCHVISION)
    hf-hub:timm/resnet50.a1_in1k          a Hugging Face Hub model's model.safetensors

The files are read from the caches torchvision and timm themselves use, so weights a user has
already downloaded with them are found, and weights placed there by hand on a machine without
internet are used:

    torch hub     torch.hub.get_dir()/checkpoints/FILE  ($TORCH_HOME/hub, ~/.cache/torch/hub)
    Hugging Face  $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub:
                  models--ORG--NAME/snapshots/REVISION/model.safetensors

A missing file is downloaded (torch.hub's downloader with the hash in torchvision's file name;
huggingface_hub for the Hub, where installed). When that fails, one line says where the file
comes from and where to place it. The built-in ResNets use torchvision's layer names, which
timm's ResNets share, so both load into them; the classifier (`fc`, `head`, `classifier`) is
left out, since BYOL trains the layers before it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from byol.core.augment import IMAGENET_MEAN, IMAGENET_STD

IMAGENET_NORMALIZATION = (IMAGENET_MEAN, IMAGENET_STD)  # torchvision's and timm's ImageNet weights

TORCHVISION_URL = "https://download.pytorch.org/models/"
TORCHVISION = {  # NAME.WEIGHTS -> file (torchvision.models' weight tables: resnet.py's ResNet*_Weights)
    "resnet18.IMAGENET1K_V1": "resnet18-f37072fd.pth",
    "resnet34.IMAGENET1K_V1": "resnet34-b627a593.pth",
    "resnet50.IMAGENET1K_V1": "resnet50-0676ba61.pth",
    "resnet50.IMAGENET1K_V2": "resnet50-11ad3fa6.pth",
}
HUB_FILE = "model.safetensors"
PREFIXES = ("torchvision:", "hf-hub:")
CLASSIFIERS = ("fc.", "head.", "classifier.")  # the classifier's parameters in torchvision's and timm's names
REVISION = re.compile(r"(?!\.\.?$)[A-Za-z0-9_.-]{1,128}")  # a commit hash or a branch name: one path component


class PretrainedError(ValueError):
    """Named weights that cannot be found or fetched, with where they come from."""


def is_named(source: str) -> bool:
    """Whether model.init_weights names published weights rather than a file."""
    return str(source).startswith(PREFIXES)


def torch_hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face cache folder, as huggingface_hub finds it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home) / "hub"


def hub_repo(source: str) -> str:
    repo = source[len("hf-hub:"):]
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise PretrainedError(f"model.init_weights {source!r}: a Hub id is ORG/NAME, e.g. hf-hub:timm/resnet50.a1_in1k")
    return repo


def cached_hub_file(repo: str) -> Path | None:
    """model.safetensors of `repo` in the Hugging Face cache: the revision refs/main points to,
    else any snapshot that holds the file (one placed by hand)."""
    folder = hf_hub_cache() / f"models--{repo.replace('/', '--')}"
    ref = folder / "refs" / "main"
    if ref.is_file():
        revision = ref.read_text(errors="replace").strip()
        if not REVISION.fullmatch(revision):  # huggingface_hub refuses such revisions too
            raise PretrainedError(f"model.init_weights hf-hub:{repo}: the cache's {ref} holds {revision[:80]!r}, which "
                                  "is no revision (a commit hash or a name without '/' or '..'); it would point "
                                  "outside the model's folder. Remove that file or the model's cache folder")
        wanted = folder / "snapshots" / revision / HUB_FILE
        if wanted.is_file():
            return wanted
    found = sorted((folder / "snapshots").glob(f"*/{HUB_FILE}"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def where(source: str) -> tuple[str, Path]:
    """(the URL the weights come from, the path they are read from in the cache)."""
    if source.startswith("torchvision:"):
        name = source[len("torchvision:"):]
        if name not in TORCHVISION:
            raise PretrainedError(f"model.init_weights {source!r}: not one of the torchvision weights this library "
                                  f"knows ({', '.join('torchvision:' + k for k in TORCHVISION)}); for others, give the "
                                  "downloaded .pth file's path")
        return TORCHVISION_URL + TORCHVISION[name], torch_hub_checkpoints() / TORCHVISION[name]
    repo = hub_repo(source)
    return (f"https://huggingface.co/{repo}/resolve/main/{HUB_FILE}",
            cached_hub_file(repo) or hf_hub_cache() / f"models--{repo.replace('/', '--')}" / "snapshots" / "main"
            / HUB_FILE)


def fetch(source: str) -> Path:
    """The local file of named weights: from the cache, else downloaded into it. A failed
    download is one PretrainedError saying where the file comes from and where to place it."""
    url, path = where(source)
    if path.is_file():
        return path
    try:
        if source.startswith("torchvision:"):
            import torch

            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), hash_prefix=path.stem.rsplit("-", 1)[-1], progress=False)
            return path
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            raise PretrainedError(f"model.init_weights {source!r}: not in the Hugging Face cache, and downloading it "
                                  f"needs huggingface_hub (pip install huggingface_hub); or fetch {url} and place it "
                                  f"at {path}") from None
        file = Path(hf_hub_download(hub_repo(source), HUB_FILE, cache_dir=str(hf_hub_cache())))
        try:  # its normalisation (normalization), where the model has a config
            hf_hub_download(hub_repo(source), "config.json", cache_dir=str(hf_hub_cache()))
        except Exception:  # noqa: BLE001 - a model without config.json keeps ImageNet's
            pass
        return file
    except PretrainedError:
        raise
    except Exception as e:  # noqa: BLE001 - no network, a proxy, a changed file: each its own kind
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise PretrainedError(f"model.init_weights {source!r}: not in the cache and the download from {url} failed "
                              f"({reason}). With no connection, fetch that file elsewhere and place it at {path}") from None


def without_classifier(state: dict, own_keys: set[str]) -> dict:
    """The state dict less the classifier's parameters (CLASSIFIERS) the network does not have."""
    return {k: v for k, v in state.items() if k in own_keys or not k.startswith(CLASSIFIERS)}


@dataclass(frozen=True)
class WeightsCard:
    """What a named weights file's own description says (a Hub model's config.json; torchvision's
    weights table): the normalisation they were trained with, or ImageNet's as a default where
    nothing says (known False, and `said` tells why), and for a folder that `byol export
    --hub-folder` wrote, the network it holds (backbone, backbone_args)."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    known: bool
    said: str  # where the normalisation comes from, as the run's note says it
    backbone: str | None = None
    backbone_args: dict | None = None


def card(source: str, path: Path) -> WeightsCard:
    """The WeightsCard of named weights whose file is `path` (see WeightsCard). A config.json
    whose mean/std cannot be used (a zero or negative std, values off the [0, 1] scale) is one
    PretrainedError naming the file."""
    import json

    if source.startswith("torchvision:"):
        return WeightsCard(*IMAGENET_NORMALIZATION, True, "torchvision's ImageNet weights")
    config_file = path.parent / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except FileNotFoundError:
        return WeightsCard(*IMAGENET_NORMALIZATION, False, "ImageNet's, as a default: the model has no config.json "
                                                           "that says how its weights were trained")
    except (OSError, ValueError) as e:
        return WeightsCard(*IMAGENET_NORMALIZATION, False, f"ImageNet's, as a default: {config_file} cannot be read "
                                                           f"({type(e).__name__}), so nothing says how the weights were "
                                                           "trained")
    pretrained_cfg = config.get("pretrained_cfg") if isinstance(config, dict) else None
    try:
        mean, std = (tuple(float(v) for v in pretrained_cfg[k]) for k in ("mean", "std"))
    except (KeyError, TypeError, ValueError):
        return WeightsCard(*IMAGENET_NORMALIZATION, False, f"ImageNet's, as a default: {config_file} has no "
                                                           "pretrained_cfg mean and std")
    if len(mean) != len(std) or not all(0 < v <= 1 for v in std) or not all(0 <= v <= 1 for v in mean):
        raise PretrainedError(f"model.init_weights {source!r}: {config_file} gives mean {list(mean)} and std "
                              f"{list(std)}, which cannot normalise pixels in [0, 1] (one value per channel, std in "
                              "(0, 1], mean in [0, 1]); fix that file, or set augment.mean and augment.std")
    network = {}
    if config.get("library") == "byol" and isinstance(config.get("architecture"), str):  # byol export --hub-folder
        network = {"backbone": config["architecture"], "backbone_args": dict(config.get("backbone_args") or {})}
    return WeightsCard(mean, std, True, "its config.json", **network)
