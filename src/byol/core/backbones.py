"""Backbones: a small ResNet registry, and any user class by import path.

    build_backbone("resnet18", stem="cifar", width=0.25)
    build_backbone("my_pkg.models:MyNet", channels=64)      # user code, imported on request

The ResNets (He et al. 2016) use torchvision's layer names (conv1, bn1, layer1..4,
avgpool, fc), so torchvision checkpoints and code that expects those names work. With
num_classes=0 (the default) `fc` is the identity and the output is the pooled feature.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch
from torch import nn


class BackboneError(ValueError):
    """A backbone that cannot be built, with the name and what went wrong."""


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, ch * self.expansion, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, ch * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, ch * self.expansion, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(in_ch: int, out_ch: int, stride: int):
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class ResNet(nn.Module):
    """ResNet with a CIFAR stem (3x3 stride 1, no max-pool) or the ImageNet one (7x7/2 + pool).

    width scales every stage's channels (0.25 gives 16-32-64-128 for ResNet-18).
    zero_init_residual starts the last batch-norm scale of every residual block at 0, so
    each block begins as the identity (Goyal et al. 2017), as in the ResNets of DeepMind's
    BYOL code (byol/utils/networks.py builds haiku's ResNet blocks, whose last BatchNorm has
    `scale_init=jnp.zeros`); configs/imagenet.yaml turns it on for ResNet-50.

    The other libraries' CIFAR ResNets, for comparing like with like: stem_padding (the CIFAR
    stem's 3x3 convolution pads by 1, 32-px maps; solo-learn's pads by 2, 34-px maps),
    stem_relu=False (no ReLU after the stem's batch norm: lightly's benchmark ResNet, whose
    `nn.Sequential` of children leaves out the `F.relu` of its forward) and init="pytorch"
    (each layer's own default initialisation, as lightly's; "kaiming": He et al. 2015, fan-out,
    as torchvision's ResNets).
    """

    def __init__(self, block, layers, stem: str = "imagenet", width: float = 1.0,
                 in_channels: int = 3, num_classes: int = 0, zero_init_residual: bool = False,
                 stem_padding: int = 1, stem_relu: bool = True, init: str = "kaiming"):
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise BackboneError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if init not in ("kaiming", "pytorch"):
            raise BackboneError(f"init must be 'kaiming' or 'pytorch', got {init!r}")
        if stem_padding != 1 and stem != "cifar":
            raise BackboneError(f"stem_padding {stem_padding} applies to the CIFAR stem only (stem: cifar)")
        chans = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, chans[0], 3, 1, stem_padding, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, chans[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(chans[0])
        self.relu = nn.ReLU(inplace=True) if stem_relu else nn.Identity()
        in_ch = chans[0]
        stages = []
        for i, (ch, n) in enumerate(zip(chans, layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(in_ch, ch, 2 if (i > 0 and j == 0) else 1))
                in_ch = ch * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_ch
        self.fc = nn.Linear(in_ch, num_classes) if num_classes else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and init == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if zero_init_residual and isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def resnet18(**kw) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], **kw)


def resnet34(**kw) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], **kw)


def resnet50(**kw) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kw)


REGISTRY = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}

# Model libraries that are installed but fail to import, with why (a torchvision built for
# another torch: "operator torchvision::nms does not exist"); filled by
# byol.training.quarantine_broken_torchvision, read when a backbone names one of them.
BROKEN: dict[str, str] = {}


def not_importing(path: str, library: str, error: str) -> str:
    return (f"backbone {path!r} needs {library}, which is installed but does not import beside torch "
            f"{torch.__version__} ({error}): install the {library} built for this torch (with torch pinned: "
            f"pip install -c requirements.lock {library}), or uninstall it")


def import_object(path: str):
    """'package.module:Name' -> the object. Only called for a path the user named."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise BackboneError(f"backbone {path!r} is neither a built-in ({', '.join(REGISTRY)}) "
                         "nor an import path of the form 'package.module:ClassName'")
    top = module_name.split(".")[0]
    if top in BROKEN:
        raise BackboneError(not_importing(path, top, BROKEN[top])) from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        needed = (e.name or "").split(".")[0]
        if needed in BROKEN:  # timm, which imports torchvision
            raise BackboneError(not_importing(path, needed, BROKEN[needed])) from None
        here = Path.cwd()
        if e.name != top or str(here) in sys.path or not ((here / f"{top}.py").is_file() or (here / top).is_dir()):
            raise BackboneError(f"cannot import {module_name!r} for backbone {path!r}: {e}. A module of your own "
                                "must be importable: run byol in the folder that holds it, or add that folder "
                                "to PYTHONPATH") from None
        sys.path.insert(0, str(here))  # the user's module in the current folder, as `python -m` would find it
        return import_object(path)
    except ImportError as e:
        raise BackboneError(f"cannot import {module_name!r} for backbone {path!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a library built for another torch fails with a RuntimeError
        lines = str(e).strip().splitlines()
        raise BackboneError(not_importing(path, top, f"{type(e).__name__}: {lines[-1] if lines else ''}")) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BackboneError(f"{module_name!r} has no attribute {attr!r} (backbone {path!r})")
        obj = getattr(obj, part)
    return obj


TRUSTED_FACTORIES_ENV = "BYOL_TRUSTED_FACTORIES"


def registered_builder(obj) -> str | None:
    """The registry that lists `obj` as a model builder, or None: this package's REGISTRY,
    torchvision.models' builders (list_models / get_model_builder), timm's create_model and its
    registered model entrypoints. Only a library that is imported already is asked (import_object
    imported the one the name points into)."""
    if any(obj is builder for builder in REGISTRY.values()):
        return "byol"
    module = getattr(obj, "__module__", None) or ""
    tv = sys.modules.get("torchvision.models")
    if module.startswith("torchvision.") and tv is not None and hasattr(tv, "list_models"):
        if any(obj is tv.get_model_builder(n) for n in tv.list_models()):
            return "torchvision"
    timm = sys.modules.get("timm")
    if module.startswith("timm") and timm is not None:
        if obj is getattr(timm, "create_model", None):
            return "timm"
        models = getattr(timm, "models", None)
        name = getattr(obj, "__name__", "")
        if models is not None and hasattr(models, "is_model") and models.is_model(name) and \
                models.model_entrypoint(name) is obj:
            return "timm"
    return None


# Keyword arguments that name a file, a folder or a URL (timm's checkpoint_path and
# pretrained_cfg_overlay={file: ...}, torch hub's model_dir, ...): a builder would read or
# write there. A config file shared by someone else may not name one; the command line and a
# Python caller may.
FILE_ARGUMENTS = ("checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay", "file", "filename", "path", "url",
                  "cache_dir", "model_dir", "root", "hf_hub_id", "hf_hub_filename")
FILE_ARGUMENT_ENDINGS = ("_path", "_file", "_dir", "_url", "_uri", "_root")
FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".bin", ".npz", ".h5", ".onnx", ".pkl", ".json", ".yaml")


def file_arguments(args: dict, prefix: str = "") -> list[str]:
    """The (dotted) keys of `args` that name a file, a folder or a URL: by their name
    (FILE_ARGUMENTS, FILE_ARGUMENT_ENDINGS) or by a string value that looks like one (a slash,
    ~, a leading dot, a weights file's suffix), nested mappings included."""
    found = []
    for key, value in args.items():
        name = f"{prefix}{key}"
        k = str(key).lower()
        if k in FILE_ARGUMENTS or k.endswith(FILE_ARGUMENT_ENDINGS):
            found.append(name)
        elif isinstance(value, dict):
            found += file_arguments(value, f"{name}.")
        elif isinstance(value, str) and (any(c in value for c in "/\\") or value.strip().startswith(("~", "."))
                                         or value.lower().endswith(FILE_SUFFIXES)):
            found.append(name)
    return found


def check_buildable(name: str, obj, args: dict | None = None, args_from: str | None = None) -> None:
    """What a backbone name may call, checked before it is called, since a config file shared
    by someone else names it: an nn.Module class, or a model builder that a registry lists
    (registered_builder). Any other function (byol.checkpoint:atomic_write_text would write a
    file, subprocess:getoutput run a command) only when the user names it in the environment
    variable BYOL_TRUSTED_FACTORIES (comma-separated import paths). `args_from`: the file the
    arguments came from, when a file and not the user's command line or code gave them; then an
    argument that names a file, a folder or a URL (file_arguments) is refused."""
    import os

    if isinstance(obj, type) and not issubclass(obj, nn.Module):
        raise BackboneError(f"backbone {name!r} is the class {obj.__qualname__}, not a torch.nn.Module class; "
                            "name an nn.Module class or a registered model builder")
    trusted = name in [n.strip() for n in os.environ.get(TRUSTED_FACTORIES_ENV, "").split(",")]
    if isinstance(obj, type) or registered_builder(obj) is not None or trusted:
        if args_from and args:
            named = file_arguments(args)
            if named:
                raise BackboneError(f"backbone {name!r}: {args_from} gives model.backbone_args {named[0]} = "
                                    f"{_dig(args, named[0])!r}, which names a file, folder or URL; a config file may not "
                                    "(the builder would read or write there). Give it on the command line "
                                    "or from Python if you mean it, or use model.init_weights for weights")
        return
    module = getattr(obj, "__module__", None) or "an unknown module"
    raise BackboneError(f"backbone {name!r} is {type(obj).__name__} {getattr(obj, '__qualname__', '')!r} of "
                        f"{module!r}, not an nn.Module class or a registered model builder ({', '.join(REGISTRY)}, "
                        f"torchvision.models' builders, timm's models); it was not called. If it is your own "
                        f"function that returns an nn.Module, allow it for this command: "
                        f"{TRUSTED_FACTORIES_ENV}={name} byol ...")


def _dig(args: dict, dotted: str):
    for part in dotted.split("."):
        args = args[part]
    return args


def build_backbone(name: str, *, args_from: str | None = None, **kwargs) -> nn.Module:
    """A built-in ResNet by name, or `module:Class` (an nn.Module class, or a registered model
    builder: see check_buildable) called with kwargs: `torchvision.models:resnet18`,
    `timm:create_model` with {model_name: ..., num_classes: 0}, or its short form
    `timm:MODEL_NAME` (timm's model without its classifier, pretrained=False unless kwargs say
    otherwise). args_from: the file kwargs came from, when a file gave them (check_buildable)."""
    if name.startswith("timm:") and name != "timm:create_model":
        kwargs = {"model_name": name[len("timm:"):], "num_classes": 0, **kwargs}
        name = "timm:create_model"
    if name in REGISTRY:
        try:
            return REGISTRY[name](**kwargs)
        except (TypeError, BackboneError) as e:
            raise BackboneError(f"backbone {name!r} rejected its arguments (backbone_args) {kwargs}: {e}") from None
    factory = import_object(name)
    check_buildable(name, factory, kwargs, args_from)
    if registered_builder(factory) == "timm" and "model_name" in kwargs:
        timm = sys.modules["timm"]
        if not timm.is_model(kwargs["model_name"]):
            raise BackboneError(f"backbone {name!r}: {kwargs['model_name']!r} is not one of timm's models "
                                "(timm.list_models() lists them)")
    try:
        net = factory(**kwargs)
    except TypeError as e:
        raise BackboneError(f"backbone {name!r} rejected its arguments (backbone_args) {kwargs}: {e}") from None
    except Exception as e:  # noqa: BLE001 - whatever the builder raises is said in one line
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if not (kwargs.get("pretrained") or kwargs.get("weights")):
            raise BackboneError(f"backbone {name!r} failed to build with backbone_args {kwargs}: "
                                f"{type(e).__name__}: {reason}") from None
        raise BackboneError(f"backbone {name!r} could not get its pretrained weights ({reason}). Place the files in "
                            "the cache that library reads (torch hub or Hugging Face), or build it without them and "
                            "name the weights in model.init_weights (a file, torchvision:NAME.WEIGHTS or "
                            "hf-hub:ORG/NAME)") from None
    if not isinstance(net, nn.Module):
        raise BackboneError(f"backbone {name!r} returned {type(net).__name__}, not a torch.nn.Module")
    return net
