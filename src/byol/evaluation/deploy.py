"""Exports that deploy without this package: the backbone up to its features (the hidden layer's
output, pooled) as ONNX, TorchScript or torch.export's ExportedProgram, each checked against
PyTorch before it is kept.

The exported graph takes float32 images in [0, 1], (batch, channels, image_size, image_size),
any batch size (full-precision data: float32 values in the data's own units, as read), and
returns the features (batch, D). The normalisation the network was trained
with is inside the graph by default; with normalize=False the caller applies (x - mean) / std
first, and the file's metadata says which (ONNX: metadata_props; TorchScript and
ExportedProgram: the extra file byol.json).
"""
from __future__ import annotations

import io
import json
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from byol.checkpoint import atomic_path
from byol.config import ConfigError
from byol.core.backbones import REGISTRY
from byol.core.model import evaluating
from byol.data.bands import Pixels
from byol.evaluation.saved import Reader, load_reader

FORMATS = {".safetensors": "safetensors", ".onnx": "onnx", ".torchscript": "torchscript", ".pt2": "exported-program"}
PARITY_ATOL = 1e-4  # fp32: the largest difference from PyTorch an export may show on the check's images


class Deployable(nn.Module):
    """Images in [0, 1] (8-bit pictures) or values in the data's units (full precision) ->
    features: the reader's network, normalised inside when asked (full precision: each band
    clipped to data.clip first, where the run clipped)."""

    def __init__(self, reader: Reader, normalize: bool = True):
        super().__init__()
        self.net, self.normalize = reader.net, normalize
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(reader.mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(reader.std, dtype=torch.float32).view(shape))
        clip = reader.pixels.clip if normalize else None
        self.clipped = clip is not None
        if clip is not None:
            self.register_buffer("low", torch.tensor(clip[0], dtype=torch.float32).view(shape))
            self.register_buffer("high", torch.tensor(clip[1], dtype=torch.float32).view(shape))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if self.clipped:
            x = torch.minimum(torch.maximum(x, self.low), self.high)
        x = (x - self.mean) / self.std if self.normalize else x
        return self.net(x)


def export(checkpoint: str | Path, out: str | Path, format: str | None = None, normalization: str = "inside",
           backbone: str | None = None, backbone_args: dict | None = None) -> dict:
    """Write a checkpoint's (or an export's) backbone to `out`, in the format its suffix names
    (FORMATS: .safetensors, .onnx, .torchscript, .pt2) or `format`; an unknown suffix is
    refused. .safetensors holds the weights under the network's own key names; the others
    deploy without byol, checked against PyTorch before they are kept, with the run's
    normalisation inside the graph ("inside") or left to the caller ("outside"). Returns what
    was written: {"path", "format", and for the deployable formats the input, normalisation,
    preprocessing and the parity check's largest difference}. `byol export` and `byol.export`
    are this one function."""
    from byol.checkpoint import export_backbone

    fmt = format_of(out, format)
    if normalization not in ("inside", "outside"):
        raise ConfigError(f"normalization {normalization!r}: choose inside or outside")
    if fmt == "safetensors":
        return {"path": str(export_backbone(checkpoint, out)), "format": fmt}
    return {"path": str(out), **export_deployable(checkpoint, out, fmt, normalization == "inside", backbone,
                                                  backbone_args)}


def format_of(path: str | Path, given: str | None) -> str:
    """The export format: `given`, or the one the file name's suffix says."""
    if given:
        if given not in FORMATS.values():
            raise ConfigError(f"--format {given!r}: choose {', '.join(FORMATS.values())}")
        return given
    suffix = Path(path).suffix
    if suffix not in FORMATS:
        raise ConfigError(f"-o {str(path)!r}: name the format with --format ({', '.join(FORMATS.values())}) or "
                          f"end the name in {', '.join(FORMATS)}")
    return FORMATS[suffix]


def metadata(r: Reader, fmt: str, normalize: bool) -> dict:
    values = ("float32 images in [0, 1]" if not r.pixels.full else
              "float32 values in the data's own units (as read at full precision: see preprocessing)")
    clip = " (each band clipped to clip first)" if r.pixels.clip is not None else ""
    return {**r.settings, "format": fmt,
            "input": f"{values}, (batch, {r.channels}, {r.image_size}, {r.image_size})",
            "preprocessing": preprocessing(r.image_size, r.crop, r.pixels),
            "output": "features (batch, D): the hidden layer's output, pooled",
            "normalization": f"inside the graph{clip}" if normalize else f"outside: give (x - mean) / std{clip}"}


def preprocessing(size: int, crop: float, pixels: Pixels | None = None) -> str:
    """How `byol embed` prepares an image for a network of input `size` and evaluation crop
    `crop`, in words (export metadata; docs/export.md's preprocess() does it in code)."""
    side = round(size / crop)
    inner = f", then its centre {size} px" if side != size else ""
    if pixels is not None and pixels.full:
        read = ["values as stored (TIFF, .npy, .npz; DICOM: times RescaleSlope plus RescaleIntercept"
                + (f", clipped to the window centre {pixels.window[0]:g}, width {pixels.window[1]:g}" if pixels.window
                   else "") + ")"]
        if pixels.bands is not None:
            read.append(f"bands {list(pixels.bands)} (0-based) in that order")
        return (", ".join(read) + f", as float32 (bands, H, W); shorter side resized to {side} px (bicubic, "
                f"antialiased, in float, not clipped), the centre {side} px square{inner}; no scaling")
    return (f"shorter side resized to {side} px (bicubic; a JPEG decoded at the DCT scale that keeps that side), "
            f"the centre {side} px square{inner}, values / 255")


def run_export(path: str, fmt: str, images: torch.Tensor) -> torch.Tensor:
    """The features the exported file computes for `images`, run as a deployment runs it:
    onnxruntime for ONNX, torch.jit.load, torch.export.load."""
    with torch.no_grad():
        return _run(path, fmt, images)


def _run(path: str, fmt: str, images: torch.Tensor) -> torch.Tensor:
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    if fmt == "torchscript":
        return torch.jit.load(path)(images)
    return torch.export.load(io.BytesIO(Path(path).read_bytes())).module()(images)


def export_deployable(checkpoint: str, out: str | Path, fmt: str, normalize: bool = True,
                      backbone: str | None = None, backbone_args: dict | None = None) -> dict:
    """Write the checkpoint's (or export's) backbone as `fmt` to `out`; returns its metadata
    with the parity check: the largest absolute difference from PyTorch on 4 images (and a
    batch of another size, for the dynamic batch), refused above PARITY_ATOL."""
    r = load_reader(checkpoint, backbone, backbone_args)
    model = Deployable(r, normalize)
    g = torch.Generator().manual_seed(0)
    example, other = (torch.rand(n, r.channels, r.image_size, r.image_size, generator=g) for n in (4, 3))
    if r.pixels.full:  # values of the data's own spread, around its mean
        centre, spread = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (r.mean, r.std))
        example, other = (centre + spread * (4 * x - 2) for x in (example, other))
    info = metadata(r, fmt, normalize)
    extra = {"byol.json": json.dumps(info)}
    with evaluating(model), torch.no_grad():
        expected = [model(example), model(other)]
        with atomic_path(Path(out)) as tmp:
            if fmt == "onnx":
                write_onnx(model, example, str(tmp), info)
            elif fmt == "torchscript":
                torch.jit.save(torch.jit.trace(model, example), str(tmp), _extra_files=extra)
            elif fmt == "exported-program":
                batch = torch.export.Dim("batch", min=1)
                program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},), strict=False)
                buffer = io.BytesIO()  # torch.export names a file by its .pt2 suffix; the temporary name has none
                torch.export.save(program, buffer, extra_files=extra)
                tmp.write_bytes(buffer.getvalue())
            else:
                raise ConfigError(f"format {fmt!r}: export_deployable writes {', '.join(list(FORMATS.values())[1:])}")
            got = [run_export(str(tmp), fmt, x) for x in (example, other)]
            diff = max(float((a - b).abs().max()) for a, b in zip(got, expected))
            if not diff <= PARITY_ATOL:
                raise ConfigError(f"the {fmt} export differs from PyTorch by {diff:.3g} (more than {PARITY_ATOL:g}) on "
                                  f"the check's images; it was not written. Export as safetensors instead")
    return {**info, "max_abs_difference": diff}


def write_onnx(model: nn.Module, example: torch.Tensor, path: str, info: dict) -> None:
    """ONNX through torch's TorchScript-based exporter (dynamic batch), the metadata as
    metadata_props. An operator the exporter cannot write is one line (what the exporter prints
    of the graph on its way is kept out of the output) that names the formats that can."""
    import onnx

    try:
        with quiet_output():
            torch.onnx.export(model, (example,), path, input_names=["images"], output_names=["features"],
                              dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, opset_version=17,
                              dynamo=False)
    except Exception as e:  # noqa: BLE001 - UnsupportedOperatorError, SymbolicValueError, RuntimeError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ConfigError(f"the network cannot be written as ONNX ({type(e).__name__}: {first}); export it as an "
                          "ExportedProgram (-o NAME.pt2) or TorchScript (-o NAME.torchscript), which keep every "
                          "PyTorch operator") from None
    graph = onnx.load(path)
    for key, value in info.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(graph, path)


@contextmanager
def quiet_output():
    """The process's stdout and stderr, Python's and the file descriptors (which native code
    writes to), sent to /dev/null inside the block."""
    import contextlib
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def export_hub_folder(checkpoint: str, folder: str | Path) -> Path:
    """A folder that a Hugging Face or timm user loads without this package, in the layout of
    timm's models on the Hub: model.safetensors (the backbone's weights under its own key
    names, with byol's export metadata), config.json (the architecture and its arguments, the
    input size and normalisation as timm's pretrained_cfg) and README.md, a model card with the
    run's settings, data size and verdict (from the run folder's summary.json, where it is)."""
    from byol.checkpoint import (
        atomic_write_text,
        backbone_state,
        checkpoint_config,
        export_metadata,
        load_checkpoint,
        reader_settings,
        save_safetensors,
    )

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--hub-folder {str(folder)!r} is a file; give a folder (made if missing)")
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(f"--hub-folder {str(folder)!r} holds files already; give a new or empty folder (an export "
                          "writes model.safetensors, config.json and README.md, and replaces none of yours)")
    ckpt = load_checkpoint(checkpoint)
    config = checkpoint_config(ckpt)
    s = reader_settings(config)
    name = s["backbone"]
    library = "timm" if name.startswith("timm:") else "torchvision" if (
        name.startswith("torchvision.models:") or (name == "resnet18" and not s["backbone_args"])) else "byol"
    hub = {"architecture": name.split(":", 1)[-1] if library != "byol" else name, "library": library,
           "backbone_args": s["backbone_args"], "num_classes": 0, "hidden_layer": s["hidden_layer"],
           "pretrained_cfg": {"input_size": [s["channels"], s["image_size"], s["image_size"]], "mean": s["mean"],
                              "std": s["std"], "crop_pct": s["eval_crop"], "interpolation": "bicubic"}}
    if s["pixels"] == "full":  # not timm's 8-bit [0, 1] input: say how the values were read
        hub.update(full_precision=True, reading={k: s[k] for k in ("bands", "layout", "window", "clip")})
    save_safetensors(backbone_state(ckpt), folder / "model.safetensors", export_metadata(s))
    atomic_write_text(folder / "config.json", json.dumps(hub, indent=2) + "\n")
    summary_file = Path(checkpoint).resolve().parent.parent / "summary.json"
    try:
        summary = json.loads(summary_file.read_text())
    except (OSError, ValueError):
        summary = {}
    atomic_write_text(folder / "README.md", model_card(hub, config, summary))
    return folder


def model_card(hub: dict, config: dict, summary: dict) -> str:
    load = {"timm": f'import timm\nnet = timm.create_model("{hub["architecture"]}", num_classes=0, '
                    'pretrained=True,\n                        pretrained_cfg_overlay={"file": "model.safetensors"})',
            "torchvision": f'import torch\nimport torchvision\nfrom safetensors.torch import load_file\n\nnet = '
                           f'torchvision.models.{hub["architecture"]}()\nnet.fc = torch.nn.Identity()  # BYOL trains no '
                           'classifier: the file holds every other weight\nnet.load_state_dict(load_file('
                           '"model.safetensors"))  # strict: a key that does not fit is an error',
            "byol": 'import json\nfrom safetensors.torch import load_file\n' + (
                    'from byol.core.backbones import build_backbone\n\nconfig = json.load(open("config.json"))\n'
                    f'net = build_backbone("{hub["architecture"]}", **config["backbone_args"])\n'
                    if hub["architecture"] in REGISTRY else
                    '\nconfig = json.load(open("config.json"))\n'
                    f'net = YourNet(**config["backbone_args"])  # the class the run named: {hub["architecture"]}\n')
                    + 'net.load_state_dict(load_file("model.safetensors"))'}[hub["library"]]
    verdict = (summary.get("verdict") or {}).get("message", "not measured (no labeled held-out images)")
    p = hub["pretrained_cfg"]
    lines = ["---", "library_name: " + hub["library"], "tags: [self-supervised, byol, image-feature-extraction]", "---",
             "", f"# {hub['architecture']} pretrained with BYOL", "",
             "Self-supervised pretraining with BYOL (Grill et al. 2020, arXiv 2006.07733) by byol. The weights are "
             "the online backbone's, under the network's own key names; the classifier, which BYOL does not train, "
             "is not included.", "", "## Load", "", "```python", load, "```", "",
             f"Input: {p['input_size'][0]} channels, {p['input_size'][1]} px, "
             + ("scaled to [0, 1] and normalised with " if not hub.get("full_precision") else
                "values in the data's own units (read at full precision: "
                + ", ".join(f"{k} {v}" for k, v in hub["reading"].items() if v is not None)
                + "), standardised with ")
             + f"mean {p['mean']} and std {p['std']}; the features are the output of "
             f"{hub['hidden_layer'] or 'the network'}, pooled.", "", "## Training", "",
             f"- images: {summary.get('train_images', 'not recorded')}; epochs: {summary.get('epochs', config.get('train', {}).get('epochs'))}; "
             f"steps: {summary.get('steps', 'not recorded')}; precision: {summary.get('precision', 'not recorded')}",
             f"- optimiser: {config.get('optim', {}).get('name')} lr {config.get('optim', {}).get('base_lr')} x batch/256, "
             f"batch {config.get('train', {}).get('batch_size')}; target tau {config.get('model', {}).get('tau_base')} -> "
             f"{config.get('model', {}).get('tau_final')}",
             f"- verdict on held-out images: {verdict}", ""]
    return "\n".join(lines)
