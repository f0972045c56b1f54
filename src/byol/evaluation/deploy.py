"""Exports that deploy without this package: the backbone up to its features (the hidden layer's
output, pooled) as ONNX, TorchScript or torch.export's ExportedProgram, each checked against
PyTorch before it is kept.

The exported graph takes float32 images in [0, 1], (batch, channels, image_size, image_size),
any batch size, and returns the features (batch, D). The normalisation the network was trained
with is inside the graph by default; with normalize=False the caller applies (x - mean) / std
first, and the file's metadata says which (ONNX: metadata_props; TorchScript and
ExportedProgram: the extra file byol.json).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch import nn

from byol.checkpoint import atomic_path
from byol.config import ConfigError
from byol.core.model import evaluating
from byol.evaluation.saved import Reader, load_reader

FORMATS = {".safetensors": "safetensors", ".onnx": "onnx", ".torchscript": "torchscript", ".pt2": "exported-program"}
PARITY_ATOL = 1e-4  # fp32: the largest difference from PyTorch an export may show on the check's images


class Deployable(nn.Module):
    """Images in [0, 1] -> features: the reader's network, normalised inside when asked."""

    def __init__(self, reader: Reader, normalize: bool = True):
        super().__init__()
        self.net, self.normalize = reader.net, normalize
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(reader.mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(reader.std, dtype=torch.float32).view(shape))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std if self.normalize else images
        return self.net(x)


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
    return {**r.settings, "format": fmt,
            "input": f"float32 images in [0, 1], (batch, {r.channels}, {r.image_size}, {r.image_size})",
            "output": "features (batch, D): the hidden layer's output, pooled",
            "normalization": "inside the graph" if normalize else "outside: give (x - mean) / std"}


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
    example = torch.rand(4, r.channels, r.image_size, r.image_size, generator=g)
    other = torch.rand(3, r.channels, r.image_size, r.image_size, generator=g)
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
    metadata_props."""
    import onnx

    torch.onnx.export(model, (example,), path, input_names=["images"], output_names=["features"],
                      dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False)
    graph = onnx.load(path)
    for key, value in info.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(graph, path)
