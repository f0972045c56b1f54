"""Checkpoints: atomic writes, safe loading, and the backbone's weights in the user's key names.

A pretraining checkpoint is Lightning's: `state_dict` (keys `model.online.net.*` hold the
user's network), optimiser and scheduler states, loop progress, `hyper_parameters`
(the run's config) and our `byol` entry (library version, RNG states). It is loaded with
`torch.load(weights_only=True)`: no arbitrary object is unpickled.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from byol.core.backbones import REGISTRY, build_backbone

BACKBONE_PREFIX = "model.online.net."


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used, with its path."""


class OutputError(ValueError):
    """An output path that byol will not write: a link, a folder, a device, FIFO or socket."""


def check_output_file(path: str | Path) -> None:
    """Outputs are regular files: a symbolic link at `path` (a write would follow it out of the
    run folder, or replace it), a folder, a device, a FIFO or a socket is refused in one line."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:  # a name or path too long, a component that is a file
        raise OutputError(f"{str(path)!r} cannot be written ({e.strerror}); choose a shorter or other path") from None
    if stat.S_ISREG(mode):
        return
    kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else
            "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device")
    advice = ("byol writes only regular files and never follows a link: remove the link or choose another name"
              if stat.S_ISLNK(mode) else "give the path of a file" + (" inside it" if stat.S_ISDIR(mode) else ""))
    raise OutputError(f"{str(path)!r} is {kind}, not a regular file; {advice}")


def follow_umask(path: str | Path) -> None:
    """Give `path` the mode a newly created file gets (0666 less the umask): temporary files
    (mkstemp) and safetensors' are made 0600, every output of a run is 0644 under the usual umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_replace(tmp: str | Path, final: str | Path) -> None:
    """Flush `tmp` to disk and rename it over `final`: a crash leaves the old file or the new."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def temporary_name(path: Path) -> Path:
    """A new, empty file beside `path` whose name no other process or thread can get (mkstemp),
    kept within the 255-byte name limit: every writer of `path` stages its own copy."""
    import tempfile

    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


@contextmanager
def atomic_path(path: str | Path):
    """A temporary path in the folder of `path` (made if missing), unique to this writer, for the
    block to write; when the block ends it is renamed over `path` (atomic_replace), or removed if
    the block failed: a crash or a full disk leaves the old file or none, never half of one, and
    two processes writing the same file each rename a whole copy. `path` must be a regular file
    or not exist (check_output_file)."""
    path = Path(path)
    check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        follow_umask(tmp)
        atomic_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write) -> None:
    """write(binary file) into `path` through atomic_path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def atomic_write_text(path: str | Path, text: str) -> None:
    """`text` into `path` through atomic_path."""
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_save(obj, path: str | Path) -> None:
    """torch.save through atomic_write."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns before it refuses a pickle; the error below says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch raises many kinds here; its advice to load unsafely is not ours
        raise CheckpointError(f"{str(path)!r} is not a byol checkpoint or safetensors file (it cannot be read as "
                              "a checkpoint of tensors); pass checkpoints/last.ckpt of a run or an exported "
                              ".safetensors file") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{str(path)!r} is not a byol checkpoint or safetensors file (no state_dict)")
    refuse_nonfinite(ckpt["state_dict"], path)
    return ckpt


def nonfinite_keys(state: dict) -> list[str]:
    """The names of the floating-point tensors in `state` that hold inf or NaN."""
    return [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def refuse_nonfinite(state: dict, path: str | Path) -> None:
    """A checkpoint or weights file with an inf or NaN tensor is refused: its network diverged."""
    bad = nonfinite_keys(state)
    if bad:
        raise CheckpointError(f"{str(path)!r}: {len(bad)} tensor(s) hold inf or NaN (e.g. {bad[0]}): the network "
                              "had diverged when this was written; use an earlier checkpoint, or train again "
                              "with a lower optim.base_lr")


def checkpoint_config(ckpt: dict) -> dict:
    """The run's config in a checkpoint, checked for the shape every reader relies on: sections
    that are mappings, a backbone named by a string, its arguments a mapping."""
    try:
        config = ckpt["hyper_parameters"]["config"]
    except (KeyError, TypeError):
        raise CheckpointError("checkpoint has no byol config (hyper_parameters.config)") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"the checkpoint's config (hyper_parameters.config) is a {type(config).__name__}, not "
                              "a mapping of settings: the file was changed or not written by byol")
    broken = [k for k, v in config.items() if not isinstance(v, dict) and k != "epoch_presets"]
    model = config.get("model")
    if broken or not isinstance(model, dict):
        raise CheckpointError(f"the checkpoint's config has no settings for section "
                              f"{(broken or ['model'])[0]!r}: the file was changed or not written by byol")
    if not (isinstance(model.get("backbone"), str) and model["backbone"]) or \
            not isinstance(model.get("backbone_args", {}), dict):
        raise CheckpointError(f"the checkpoint's config names no usable backbone (model.backbone "
                              f"{model.get('backbone')!r}, model.backbone_args {model.get('backbone_args')!r}): the file "
                              "was changed or not written by byol")
    return config


def backbone_state(ckpt: dict) -> dict[str, torch.Tensor]:
    """The online backbone's weights, keys as in the user's own module."""
    state = {k[len(BACKBONE_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(BACKBONE_PREFIX)}
    if not state:
        raise CheckpointError("checkpoint holds no backbone weights (no 'model.online.net.*' keys)")
    return state


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    """Tensors (and string metadata) to .safetensors, atomically, with the user's umask. A failed
    write (a full disk) raises OSError, as any other file write does."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        try:
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(tmp),
                      metadata={k: str(v) for k, v in (metadata or {}).items()})
        except SafetensorError as e:  # safetensors reports I/O errors as its own kind, e.g. "(os error 28)"
            code = re.search(r"os error (\d+)", str(e))
            raise (OSError(int(code.group(1)), os.strerror(int(code.group(1)))) if code else OSError(str(e))) from None


READER_SETTINGS = ("backbone", "backbone_args", "hidden_layer", "token_pool", "image_size", "channels", "mean",
                   "std", "eval_crop", "large_images", "load_size", "pixels", "bands", "layout", "window", "clip")
CLASSIFIER_SETTINGS = ("classes", "protocol", "head")  # a saved classifier's, besides its reader settings


def reader_settings(config: dict) -> dict:
    """What a reader of a backbone needs besides its weights, from a run's config: the backbone
    and its arguments, the hidden layer and how its tokens are pooled, the input size and channels, the normalisation, the
    evaluation centre crop, how training images were cropped (data.large_images, with
    data.load_size its bound: 'full' crops from the whole image, and so does evaluation), and
    how each file's values are read (data.pixels, bands, layout, window, clip)."""
    model, data, augment = config.get("model", {}), config.get("data", {}), config.get("augment", {})
    channels = data.get("channels", 3)
    channels = 3 if channels == "auto" else channels  # a config not planned: 8-bit RGB pictures
    return {"backbone": model.get("backbone", ""), "backbone_args": model.get("backbone_args", {}),
            "hidden_layer": model.get("hidden_layer"), "token_pool": model.get("token_pool", "mean"),
            "image_size": data.get("image_size"),
            "channels": channels, "mean": list(augment.get("mean", []))[:channels],  # one per channel, as trained
            "std": list(augment.get("std", []))[:channels], "eval_crop": data.get("eval_crop", 1.0),
            "large_images": data.get("large_images", "resize"), "load_size": data.get("load_size"),
            # how each file's values are read (byol.data.bands.Pixels): 8-bit pictures, or full precision
            "pixels": "full" if data.get("pixels") == "full" else "8-bit", "bands": data.get("bands"),
            "layout": data.get("layout", "auto"), "window": data.get("window"), "clip": data.get("clip")}


def export_metadata(settings: dict) -> dict[str, str]:
    """reader_settings (and a classifier's classes, protocol, head) as .safetensors metadata:
    strings, JSON except the backbone's name."""
    return {k: v if k == "backbone" else json.dumps(v) for k, v in settings.items()}


def read_export_metadata(path: str | Path) -> dict:
    """reader_settings of an exported .safetensors file (the keys it holds; older files hold
    only backbone and backbone_args), with classes/protocol/head for a trained classifier."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    out = {}
    for key in (*READER_SETTINGS, *CLASSIFIER_SETTINGS):
        if key in meta:
            out[key] = meta[key] if key == "backbone" else _value(meta[key])
    return out


def export_backbone(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the online backbone of a pretraining checkpoint to .safetensors (user's key names),
    with its reader_settings as metadata."""
    ckpt = load_checkpoint(checkpoint)
    settings = reader_settings(checkpoint_config(ckpt))
    save_safetensors(backbone_state(ckpt), out, export_metadata(settings))
    return Path(out)


def load_into(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """load_state_dict with a one-line error naming what does not match."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise CheckpointError(f"{source} does not fit {type(net).__name__}: keys {'; '.join(parts)}. "
                              "Was it made with another backbone or other backbone_args?")
    net.load_state_dict(state)
    return net


def load_backbone(path: str | Path, backbone: str | None = None, backbone_args: dict | None = None) -> nn.Module:
    """A backbone with weights from a pretraining checkpoint (.ckpt) or exported .safetensors.

    A checkpoint names its backbone; a user class given by import path is only imported
    when the caller names it too (`backbone`), never just because a file says so.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"weights file {str(path)!r} does not exist")
        from safetensors.torch import load_file

        try:
            meta = read_export_metadata(path)
        except Exception:  # noqa: BLE001 - safetensors raises its own kinds for a file that is not one
            raise CheckpointError(f"{str(path)!r} is not a byol checkpoint or safetensors file") from None
        name = backbone or meta.get("backbone")
        if not name:
            raise CheckpointError(f"{str(path)!r} does not name its backbone; pass --backbone")
        args = backbone_args if backbone_args is not None else (meta.get("backbone_args") or {})
        if name not in REGISTRY and name != backbone:
            raise CheckpointError(f"{str(path)!r} was made with backbone {name!r}; pass --backbone {name} to import it")
        state = load_file(str(path))
        refuse_nonfinite(state, path)
        return load_into(build_backbone(name, args_from=None if backbone_args is not None else str(path), **args),
                         state, str(path))
    ckpt = load_checkpoint(path)
    model = checkpoint_config(ckpt)["model"]
    name = model["backbone"]
    if name not in REGISTRY and backbone != name:
        raise CheckpointError(f"{str(path)!r} was made with backbone {name!r}; pass --backbone {name} to import it")
    args = backbone_args if backbone_args is not None else model.get("backbone_args", {})
    return load_into(build_backbone(backbone or name, args_from=None if backbone_args is not None else str(path),
                                    **args), backbone_state(ckpt), str(path))


WEIGHT_SUFFIXES = ".safetensors, .ckpt, .pt or .pth"


def check_weights_file(path: Path, key: str = "model.init_weights") -> None:
    """A weights file that is there and a regular file, or one line that says what is there
    instead (nothing, a folder, a FIFO or device, which would block or never end)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CheckpointError(f"{key} {str(path)!r} does not exist; give a {WEIGHT_SUFFIXES} file, or published "
                              "weights such as torchvision:resnet50.IMAGENET1K_V2") from None
    except OSError as e:
        raise CheckpointError(f"{key} {str(path)!r} cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise CheckpointError(f"{key} {str(path)!r} is {what}, not a weights file; give a {WEIGHT_SUFFIXES} file")


def load_initial_weights(net: nn.Module, path: str | Path) -> nn.Module:
    """`net` with the weights in `path` (model.init_weights): an exported or fine-tuned
    .safetensors (its backbone.* keys), a pretraining checkpoint (.ckpt: the online backbone), a
    plain state dict saved with torch.save (.pt, .pth), or named published weights
    (byol.pretrained: torchvision:NAME.WEIGHTS, hf-hub:ORG/NAME; their classifier left out).
    Strict otherwise: keys or shapes that do not fit are one line; inf/NaN weights are refused."""
    from byol import pretrained

    named = str(path) if pretrained.is_named(path) else None
    path = pretrained.fetch(named) if named else Path(path)
    check_weights_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception:  # noqa: BLE001 - safetensors raises its own kinds for a file that is not one
            raise CheckpointError(f"model.init_weights {str(path)!r} is not a safetensors file") from None
        if "head.weight" in state and not named:  # a fine-tuned network: backbone.* and the classifier's head.*
            state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    elif path.suffix == ".ckpt":
        state = backbone_state(load_checkpoint(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - pickle and zip errors of a file that is not a state dict
            raise CheckpointError(f"model.init_weights {str(path)!r} is not a state dict saved with torch.save "
                                  f"({type(e).__name__}); give a .safetensors, .ckpt, .pt or .pth file") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise CheckpointError(f"model.init_weights {str(path)!r} holds no state dict of tensors")
    if named:  # published weights hold their classifier, which the backbone does not have
        state = pretrained.without_classifier(state, set(net.state_dict()))
    refuse_nonfinite(state, path)
    return load_into(net, adapt_first_conv(state, net), f"model.init_weights {named or str(path)!r}")


def adapt_first_conv(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Weights of an RGB network for a network of N input bands: the first convolution's
    filters (the first 4-D weight whose input channels are 3 where the network's are N)
    repeated over the bands and scaled by 3 / N, so that a band image of RGB-like statistics
    gives the same activations; for one band their sum (timm's adapt_input_conv). Any other
    shape that does not fit is left for load_into to refuse."""
    own = net.state_dict()
    for k, v in state.items():
        if v.dim() != 4 or k not in own:
            continue
        bands = own[k].shape[1]
        if v.shape[1] == 3 and bands != 3 and own[k].shape[0] == v.shape[0] and own[k].shape[2:] == v.shape[2:]:
            if bands == 1:
                w = v.sum(dim=1, keepdim=True)
            else:
                w = v.repeat(1, -(-bands // 3), 1, 1)[:, :bands] * (3 / bands)
            return {**state, k: w.to(v.dtype)}
        break  # only the first convolution
    return state


def _value(text: str):
    """A metadata value: JSON, or a Python literal in files exported before it was JSON."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
