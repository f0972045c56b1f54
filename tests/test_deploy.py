"""Deployable exports (ONNX, TorchScript, ExportedProgram) give PyTorch's features on real images,
run as a deployment runs them: onnxruntime, torch.jit.load, torch.export.load."""
import io
import json
from pathlib import Path

import pytest
import torch

from byol.cli import main
from byol.data.image_sets import decode_to_memory
from byol.data.listing import list_images
from byol.evaluation.saved import load_reader

pytest.importorskip("onnxruntime", reason="the ONNX checks need onnxruntime: pip install -e '.[dev]'")


def images_of(demo_data: Path, size: int) -> torch.Tensor:
    """40 of the demo's held-out images (real PNG files), as floats in [0, 1]."""
    return decode_to_memory(list_images(str(demo_data / "test")), size, 3).images[:40].float() / 255


@pytest.mark.parametrize("suffix,fmt", [(".onnx", "onnx"), (".torchscript", "torchscript"), (".pt2", "exported-program")])
def test_an_export_computes_the_features_pytorch_computes(suffix, fmt, demo_run, demo_data, tmp_path, capsys):
    from byol.evaluation.deploy import run_export

    ckpt = str(demo_run / "checkpoints" / "last.ckpt")
    out = tmp_path / f"backbone{suffix}"
    assert main(["export", ckpt, "-o", str(out)]) == 0
    assert f"wrote {out} ({fmt};" in capsys.readouterr().out
    reader = load_reader(ckpt)
    x = images_of(demo_data, reader.image_size)
    expected = reader.features((x * 255).round().to(torch.uint8))  # byol's own path from uint8 pixels
    got = torch.cat([run_export(str(out), fmt, x[:33]), run_export(str(out), fmt, x[33:])])  # two batch sizes
    assert got.shape == expected.shape and float((got - expected).abs().max()) < 1e-4
    if fmt == "onnx":
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert meta["normalization"] == "inside the graph" and json.loads(meta["mean"]) == list(reader.mean)
    else:
        files = {"byol.json": ""}
        if fmt == "torchscript":
            torch.jit.load(str(out), _extra_files=files)
        else:
            torch.export.load(io.BytesIO(out.read_bytes()), extra_files=files)
        assert json.loads(files["byol.json"])["image_size"] == reader.image_size


def test_normalization_left_outside_is_said_and_expects_normalised_input(demo_run, demo_data, tmp_path):
    import onnx

    from byol.evaluation.deploy import run_export

    ckpt = str(demo_run / "checkpoints" / "last.ckpt")
    out = tmp_path / "outside.onnx"
    assert main(["export", ckpt, "-o", str(out), "--normalization", "outside"]) == 0
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props}["normalization"].startswith("outside")
    reader = load_reader(ckpt)
    x = images_of(demo_data, reader.image_size)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (reader.mean, reader.std))
    expected = reader.features((x * 255).round().to(torch.uint8))
    assert float((run_export(str(out), "onnx", (x - mean) / std) - expected).abs().max()) < 1e-4


def test_an_unknown_export_suffix_is_one_line(demo_run, tmp_path, capsys):
    assert main(["export", str(demo_run / "checkpoints" / "last.ckpt"), "-o", str(tmp_path / "b.bin")]) == 2
    err = capsys.readouterr().err
    assert "name the format with --format" in err and "Traceback" not in err and not (tmp_path / "b.bin").exists()


def test_a_hub_folder_loads_without_byol_as_its_model_card_says(demo_run, tmp_path, capsys):
    from safetensors.torch import load_file

    folder = tmp_path / "hub"
    assert main(["export", str(demo_run / "checkpoints" / "last.ckpt"), "--hub-folder", str(folder)]) == 0
    config = json.loads((folder / "config.json").read_text())
    card = (folder / "README.md").read_text()
    summary = json.loads((demo_run / "summary.json").read_text())
    assert config["architecture"] == "resnet18" and config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert f"images: {summary['train_images']}" in card and summary["verdict"]["message"] in card
    code = card.split("```python\n")[1].split("```")[0]  # the card's own loading code, run in the folder
    namespace: dict = {}
    cwd = Path.cwd()
    try:
        import os

        os.chdir(folder)
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    state = load_file(str(folder / "model.safetensors"))
    assert all(torch.equal(v, state[k]) for k, v in namespace["net"].state_dict().items())


def test_embed_maps_gives_unpooled_layers_that_pool_to_the_embeddings(demo_run, demo_data, tmp_path, capsys):
    import numpy as np

    ckpt = str(demo_run / "checkpoints" / "last.ckpt")
    assert main(["embed", ckpt, str(demo_data / "test"), "-o", str(tmp_path / "maps.npz"), "--maps", "layer2,layer4"]) == 0
    assert main(["embed", ckpt, str(demo_data / "test"), "-o", str(tmp_path / "pooled.npy")]) == 0
    maps, pooled = np.load(tmp_path / "maps.npz"), np.load(tmp_path / "pooled.npy")
    assert maps["layer2"].ndim == 4 and maps["layer2"].shape[0] == pooled.shape[0]
    assert maps["layer2"].shape[-1] == 4 * maps["layer4"].shape[-1]  # layer3 and layer4 halve the maps once each
    np.testing.assert_allclose(maps["layer4"].mean(axis=(2, 3)), pooled, atol=1e-5)  # the default feature: layer4 pooled
    assert (tmp_path / "maps.files.txt").read_text() == (tmp_path / "pooled.files.txt").read_text()
    assert main(["embed", ckpt, str(demo_data / "test"), "-o", str(tmp_path / "maps.npy"), "--maps", "layer2"]) == 2
    assert "name it NAME.npz" in capsys.readouterr().err
