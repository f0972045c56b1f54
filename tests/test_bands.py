"""Beyond 8-bit RGB: multi-band TIFF, .npy/.npz arrays, DICOM and 16-bit images read at full
precision (byol.data.bands), standardised per band from the data, band-safe augmentations, N-band
networks (first convolution adapted from RGB weights), every command end to end on 8-band and
1-band data, pairs of acquisitions, and the multi-band demo. Every file here is written by its own
library (tifffile, pydicom, numpy, Pillow)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from byol.cli import main
from byol.config import ConfigError, from_dict
from byol.core.augment import AugmentConfig, BatchAugment, ViewConfig, band_dropout, band_view
from byol.data.bands import Pixels, band_shape, band_stats, kind_of, read_bands
from byol.data.listing import DataError

from conftest import make_facts

tifffile = pytest.importorskip("tifffile", reason="the TIFF readers' tests need tifffile: pip install -e '.[dev]'")
pydicom = pytest.importorskip("pydicom", reason="the DICOM reader's tests need pydicom: pip install -e '.[dev]'")

SMALL = ["--model.backbone_args", "{width: 0.125, stem: cifar}", "--model.projection_hidden_dim", "32",
         "--model.prediction_hidden_dim", "32", "--model.projection_dim", "16", "--log.report", "false",
         "--log.progress", "false", "--log.tensorboard", "false", "--train.threads", "2"]


def write_dicom(path, pixels: np.ndarray, slope: float = 1.0, intercept: float = -1024.0) -> None:
    """A CT slice as pydicom writes it: uint16 stored values, RescaleSlope and RescaleIntercept."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


# -- the readers ----------------------------------------------------------------------------------


def test_each_format_is_read_at_full_precision_by_its_own_library(tmp_path):
    rng = np.random.default_rng(0)
    cube = rng.integers(0, 10_000, (13, 20, 24), dtype=np.uint16)  # a Sentinel-2 tile's 13 bands
    tifffile.imwrite(tmp_path / "planar.tif", cube, photometric="minisblack")  # (C, H, W) as stored
    tifffile.imwrite(tmp_path / "contig.tif", cube[:4].transpose(1, 2, 0), photometric="minisblack",
                     planarconfig="contig")  # (H, W, C)
    np.save(tmp_path / "chw.npy", cube.astype(np.float32) / 3)
    np.save(tmp_path / "hwc.npy", cube.transpose(1, 2, 0))
    np.savez(tmp_path / "one.npz", image=cube[:2])
    Image.fromarray(cube[0].astype(np.uint16) * 6).save(tmp_path / "sixteen.png")  # a 16-bit PNG (I;16)
    write_dicom(tmp_path / "ct.dcm", cube[0] // 3, slope=1.0, intercept=-1024.0)
    assert kind_of(str(tmp_path / "planar.tif")) == "tiff" and kind_of(str(tmp_path / "ct.dcm")) == "dicom"
    assert np.array_equal(read_bands(str(tmp_path / "planar.tif")), cube)
    assert np.array_equal(read_bands(str(tmp_path / "contig.tif")), cube[:4])
    assert np.allclose(read_bands(str(tmp_path / "chw.npy")), cube / 3)
    assert np.array_equal(read_bands(str(tmp_path / "hwc.npy")), cube)
    assert np.array_equal(read_bands(str(tmp_path / "one.npz")), cube[:2])
    sixteen = read_bands(str(tmp_path / "sixteen.png"))
    assert sixteen.shape == (1, 20, 24) and sixteen.max() > 255 and np.array_equal(sixteen[0], cube[0] * 6)  # no 8-bit
    hu = read_bands(str(tmp_path / "ct.dcm"))
    assert np.array_equal(hu[0], (cube[0] // 3).astype(np.float32) - 1024)  # stored x slope + intercept
    windowed = read_bands(str(tmp_path / "ct.dcm"), window=(40.0, 400.0))
    assert windowed.min() >= -160 and windowed.max() <= 240
    assert np.array_equal(read_bands(str(tmp_path / "planar.tif"), bands=(3, 2, 1, 7)), cube[[3, 2, 1, 7]])
    assert band_shape(str(tmp_path / "planar.tif")) == (13, 20, 24) and band_shape(str(tmp_path / "hwc.npy")) == \
        (13, 20, 24) and band_shape(str(tmp_path / "ct.dcm")) == (1, 20, 24)
    blob = (tmp_path / "planar.tif").read_bytes()  # a shard's member: bytes with no name
    assert np.array_equal(read_bands(blob), cube)


def test_a_geotiff_with_its_geokeys_is_read_as_its_bands(tmp_path):
    bands = np.arange(6 * 8 * 8, dtype=np.uint16).reshape(6, 8, 8)
    geo = [(33550, "d", 3, (10.0, 10.0, 0.0), True),  # ModelPixelScale: 10 m pixels
           (33922, "d", 6, (0, 0, 0, 500000.0, 4600000.0, 0), True),  # ModelTiepoint: the top left corner
           (34735, "H", 12, (1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32633), True)]  # projected, UTM zone 33N
    tifffile.imwrite(tmp_path / "scene.tif", bands, photometric="minisblack", extratags=geo)
    with tifffile.TiffFile(tmp_path / "scene.tif") as tif:
        assert tif.pages[0].tags["ModelPixelScaleTag"].value == (10.0, 10.0, 0.0)
    assert np.array_equal(read_bands(str(tmp_path / "scene.tif")), bands)
    from byol.cli.main import geo_references

    np.save(tmp_path / "plain.npy", bands)
    assert geo_references(str(tmp_path), ["scene.tif", "plain.npy"]) == {"scene.tif": {
        "crs": "EPSG:32633", "pixel_size": [10.0, 10.0], "bounds": [500000.0, 4599920.0, 500080.0, 4600000.0]}}


@pytest.mark.parametrize("make, says", [
    (lambda p: np.save(p / "x.npy", np.zeros((5, 5, 5), np.float32)), "set data.layout chw or hwc"),
    (lambda p: np.save(p / "x.npy", np.full((2, 8, 8), np.nan, np.float32)), "NaN or infinite"),
    (lambda p: np.savez(p / "x.npz", a=np.zeros((8, 8)), b=np.zeros((8, 8))), "name the image 'image'"),
])
def test_an_array_that_cannot_be_one_image_says_why(tmp_path, make, says):
    make(tmp_path)
    with pytest.raises(ValueError, match=says):
        read_bands(str(next(tmp_path.iterdir())))


def band_folder(root: Path, bands: int = 8, per_class: int = 12, side: int = 16, fmt: str = "npy", seed: int = 0):
    """Two classes of `bands`-band uint16 images, each band with its own offset and gain; the
    classes differ in band 3 and up."""
    rng = np.random.default_rng(seed)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            x = np.stack([1000 * (b + 1) + 300 * rng.random((side, side)) + (400 * c if b >= 3 else 0)
                          for b in range(bands)]).astype(np.uint16)
            if fmt == "npy":
                np.save(root / f"c{c}" / f"{i}.npy", x)
            else:
                tifffile.imwrite(root / f"c{c}" / f"{i}.tif", x, photometric="minisblack")
    return root


def test_mixed_band_counts_are_refused_naming_a_file(tmp_path, capsys):
    data = band_folder(tmp_path / "d", bands=4, per_class=3)
    np.save(data / "c0" / "odd.npy", np.zeros((5, 16, 16), np.uint16))
    assert main(["pretrain", "--data.path", str(data), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mixes images of" in err and "odd.npy" in err


def test_a_band_the_files_do_not_have_is_one_line(tmp_path, capsys):
    data = band_folder(tmp_path / "d", bands=4, per_class=3)
    assert main(["pretrain", "--data.path", str(data), "--data.bands", "[0, 9]", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.bands [0, 9] names band 9" in err and "0 to 3" in err


# -- statistics and the plan ----------------------------------------------------------------------


def test_per_band_statistics_come_from_the_data_and_are_said(tmp_path, capsys):
    data = band_folder(tmp_path / "d", bands=5, per_class=6)
    assert main(["pretrain", "--data.path", str(data), "--print-config"]) == 0
    said = capsys.readouterr().out
    assert "data.pixels full (the first bytes of 10 files): 5 bands read as stored" in said  # 2 held out
    assert "data.channels: 5" in said and "data.pixels: full" in said
    values = np.stack([np.load(p) for p in sorted(data.rglob("*.npy"))]).astype(np.float64)  # every image
    mean = values.mean(axis=(0, 2, 3))
    line = next(x for x in said.splitlines() if x.startswith("augment.mean:"))
    shown = json.loads(line.split(":", 1)[1].split("#")[0])
    assert np.allclose(shown, mean, rtol=0.01)  # a sample of 4,096 values per image, within 1 %
    stats = band_stats([v for v in values], percentiles=(1, 99))
    assert all(lo < hi for lo, hi in zip(stats.low, stats.high))


def test_full_precision_data_turns_colour_off_and_multi_band_turns_rotation_and_band_dropout_on():
    from byol.training.plan import decide

    cfg = from_dict({"data": {"path": "tiles"}})
    facts = make_facts(typical_side=16)
    facts = facts.__class__(**{**facts.__dict__, "data": facts.data.__class__(
        **{**facts.data.__dict__, "pixels": "full", "channels": 8,
           "band_stats": band_stats([np.random.default_rng(0).random((8, 4, 4))])})})
    plan = decide(cfg, facts)
    v = plan.cfg.augment.view2
    assert (v.hue, v.saturation, v.grayscale_p, v.solarize_p) == (0, 0, 0, 0)
    assert v.rot90_p == 0.75 and v.band_drop_p == 0.1 and plan.cfg.data.channels == 8
    assert (v.brightness, v.contrast) == (1.2, 0.8)  # standard deviations of each band, not the paper's 0.4
    assert any("full-precision data of 8 bands" in n and "augment.view1.brightness: 0.4 -> 1.2" in n
               for n in plan.lines())
    mine = decide(from_dict({"data": {"path": "tiles"}, "augment": {"view1": {"brightness": 0.3}}}), facts)
    assert mine.cfg.augment.view1.brightness == 0.3 and mine.cfg.augment.view2.brightness == 1.2
    with pytest.raises(ConfigError, match="hue, saturation, colour dropping and solarization need 8-bit RGB"):
        decide(from_dict({"data": {"path": "tiles"}, "augment": {"view1": {"hue": 0.1}}}), facts)
    with pytest.raises(ConfigError, match="have 8 bands as read; set data.channels 8 or auto"):
        decide(from_dict({"data": {"path": "tiles", "channels": 3}}), facts)


# -- augmentations --------------------------------------------------------------------------------


def test_band_views_keep_standardised_values_unclipped_and_run_no_colour_operation(monkeypatch):
    """TorchGeo #3997: brightness and contrast written for [0, 1] pixels clipped most standardised
    EuroSAT values. Here the views of 8-band data in its own units come out standardised, with
    about a third of the values outside [0, 1] as a standard normal has, and no colour op runs."""
    import byol.core.augment as aug

    for name in ("adjust_hue", "adjust_saturation", "grayscale", "random_solarize"):
        monkeypatch.setattr(aug, name, lambda *a, _n=name, **k: pytest.fail(f"{_n} ran on band data"))
    g = torch.Generator().manual_seed(0)
    mean = torch.linspace(500, 4000, 8)
    x = mean.view(1, 8, 1, 1) + 300 * torch.randn(64, 8, 24, 24, generator=g)
    cfg = AugmentConfig(size=16, mean=tuple(mean.tolist()), std=(300.0,) * 8,
                        view1=ViewConfig(jitter_p=1.0, rot90_p=0.75, band_drop_p=0.0))
    v1, v2 = BatchAugment(cfg, pixels="full")(x)
    outside = ((v1 < 0) | (v1 > 1)).float().mean().item()
    assert 0.4 < outside < 0.9 and v1.min() < -1 and v1.max() > 2, outside  # standardised, never clipped
    assert abs(v1.mean().item()) < 0.2 and 0.6 < v1.std().item() < 1.6


def test_band_dropout_sets_bands_to_their_mean_and_keeps_one():
    torch.manual_seed(0)
    x = torch.randn(500, 4, 6, 6) + 5
    out = band_dropout(x, 0.9)
    dropped = (out == 0).flatten(2).all(dim=2)
    assert dropped.any() and not dropped.all(dim=1).any()  # never every band of an image
    expected = (4 * 0.9 - 0.9 ** 4) / 4  # each band at 0.9, less the one kept where all four drew a drop
    assert abs(dropped.float().mean().item() - expected) < 0.03
    torch.manual_seed(0)
    turned = band_view(torch.arange(16.0).view(1, 1, 4, 4).repeat(400, 1, 1, 1), ViewConfig(
        crop_scale=(1, 1), crop_ratio=(1, 1), flip_p=0, jitter_p=0, blur_p=0, rot90_p=0.75), 4, (0.0,), (1.0,),
        interpolation="nearest")
    corners = turned[:, 0, 0, 0].round()
    assert set(corners.tolist()) == {0.0, 3.0, 12.0, 15.0}  # every orientation


# -- networks -------------------------------------------------------------------------------------


def test_rgb_weights_start_an_n_band_network_with_the_first_convolution_adapted(tmp_path):
    from byol.checkpoint import adapt_first_conv, load_initial_weights
    from byol.core.backbones import build_backbone

    rgb = build_backbone("resnet18", width=0.125)
    torch.save(rgb.state_dict(), tmp_path / "rgb.pt")
    for bands in (8, 1):
        net = load_initial_weights(build_backbone("resnet18", width=0.125, in_channels=bands), tmp_path / "rgb.pt")
        w, w0 = net.conv1.weight, rgb.conv1.weight
        expected = w0.sum(1, keepdim=True) if bands == 1 else w0.repeat(1, 3, 1, 1)[:, :bands] * 3 / bands
        assert torch.allclose(w, expected)  # timm's adapt_input_conv
        assert torch.equal(net.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight)  # the rest as it was
    x = torch.rand(2, 3, 8, 8)  # a band image whose bands repeat RGB gives the RGB network's first activations
    eight = adapt_first_conv({"conv1.weight": rgb.conv1.weight}, build_backbone("resnet18", width=0.125,
                                                                                  in_channels=6))["conv1.weight"]
    assert torch.allclose(torch.nn.functional.conv2d(x.repeat(1, 2, 1, 1), eight),
                          torch.nn.functional.conv2d(x, rgb.conv1.weight), atol=1e-5)


# -- every command end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def eight_band_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eight")
    train = band_folder(root / "train", bands=8, per_class=16, fmt="tif")
    test = band_folder(root / "test", bands=8, per_class=8, fmt="tif", seed=1)
    out = root / "run"
    assert main(["pretrain", "--data.path", str(train), "--data.val_path", str(test), "--train.out_dir", str(out),
                 "--train.epochs", "2", "--train.batch_size", "8", "--train.knn_every", "1", "--train.knn_k", "5",
                 "--data.clip_percentiles", "[1, 99]", *SMALL]) == 0
    return train, test, out


@pytest.mark.parametrize("suffix", [".safetensors", ".onnx", ".torchscript", ".pt2"])
def test_an_eight_band_run_exports_within_parity(eight_band_run, tmp_path, suffix, capsys):
    pytest.importorskip("onnxruntime")
    from byol.evaluation.deploy import PARITY_ATOL, run_export
    from byol.evaluation.saved import load_reader

    train, _, out = eight_band_run
    ckpt = str(out / "checkpoints" / "last.ckpt")
    target = tmp_path / f"net{suffix}"
    assert main(["export", ckpt, "-o", str(target)]) == 0
    reader = load_reader(ckpt)
    assert reader.channels == 8 and reader.pixels.full and reader.pixels.clip is not None
    if suffix == ".safetensors":
        exported = load_reader(str(target))  # the export keeps how to read the data and its statistics
        assert exported.pixels == reader.pixels and exported.mean == reader.mean
        return
    images = torch.stack([torch.from_numpy(Pixels.of(reader.pixels.settings()).read(str(p)))
                          for p in sorted(train.rglob("*.tif"))[:6]])  # real files, in the data's units
    expected = reader.features(images)
    fmt = {".onnx": "onnx", ".torchscript": "torchscript", ".pt2": "exported-program"}[suffix]
    got = run_export(str(target), fmt, images)
    assert float((got - expected).abs().max()) <= PARITY_ATOL


def test_an_eight_band_run_evaluates_embeds_and_writes_a_hub_folder(eight_band_run, tmp_path, capsys):
    train, test, out = eight_band_run
    ckpt = str(out / "checkpoints" / "last.ckpt")
    for protocol in ("knn", "linear", "finetune"):
        assert main(["evaluate", protocol, "--checkpoint", ckpt, "--train", str(train), "--test", str(test),
                     "--epochs", "1", "-o", str(tmp_path / f"{protocol}.json")]) == 0
        assert 0 <= json.loads((tmp_path / f"{protocol}.json").read_text())["top1"] <= 1
    assert main(["embed", ckpt, str(test), "-o", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape[0] == 16
    assert main(["export", ckpt, "--hub-folder", str(tmp_path / "hub")]) == 0
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "Input: 8 channels" in card and "values in the data's own units" in card
    config = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"][0] == 8 and config["full_precision"] is True
    summary = json.loads((out / "summary.json").read_text())
    assert summary["knn_final_top1"] is not None


def test_a_one_band_dicom_run_goes_through_every_command(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("test", 4)):
        for c in range(2):
            (tmp_path / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                write_dicom(tmp_path / split / f"c{c}" / f"{i}.dcm",
                            1000 + 200 * c + rng.integers(0, 300, (20, 20)))
    out = tmp_path / "run"
    assert main(["pretrain", "--data.path", str(tmp_path / "train"), "--data.val_path", str(tmp_path / "test"),
                 "--data.window", "[40, 400]", "--train.out_dir", str(out), "--train.epochs", "1",
                 "--train.batch_size", "4", "--train.knn_every", "1", "--train.knn_k", "3", *SMALL]) == 0
    said = capsys.readouterr().out
    assert "data.pixels full" in said and "1 band read as stored" in said
    ckpt = str(out / "checkpoints" / "last.ckpt")
    assert main(["evaluate", "knn", "--checkpoint", ckpt, "--train", str(tmp_path / "train"), "--test",
                 str(tmp_path / "test"), "-k", "3", "-o", str(tmp_path / "k.json")]) == 0
    assert main(["embed", ckpt, str(tmp_path / "test"), "-o", str(tmp_path / "e.npy")]) == 0
    for suffix in (".onnx", ".pt2"):
        assert main(["export", ckpt, "-o", str(tmp_path / f"net{suffix}")]) == 0


# -- pairs of acquisitions, the demo, the preview -------------------------------------------------


def test_pairs_from_a_list_file_and_from_a_folder_per_place_train(tmp_path, capsys):
    rng = np.random.default_rng(0)
    places = tmp_path / "places"
    lines = []
    for p in range(8):
        (places / f"tile{p}").mkdir(parents=True)
        for date in ("2019", "2020"):
            np.save(places / f"tile{p}" / f"{date}.npy", rng.integers(0, 5000, (4, 12, 12)).astype(np.uint16))
        lines.append(f"tile{p}/2019.npy, tile{p}/2020.npy")
    (tmp_path / "pairs.csv").write_text("# two dates of each tile\n" + "\n".join(lines) + "\n")
    for extra in (["--data.pairs_file", str(tmp_path / "pairs.csv")], []):
        out = tmp_path / f"run{len(extra)}"
        assert main(["pretrain", "--data.dataset", "pairs", "--data.path", str(places), *extra,
                     "--train.out_dir", str(out), "--train.epochs", "1", "--train.batch_size", "4",
                     "--train.knn_every", "0", *SMALL]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["train_images"] == (8 if extra else 16) and summary["steps"] == (2 if extra else 4)
    (tmp_path / "bad.csv").write_text("tile0/2019.npy, tile0/missing.npy\n")
    assert main(["pretrain", "--data.dataset", "pairs", "--data.path", str(places), "--data.pairs_file",
                 str(tmp_path / "bad.csv"), "--print-config"]) == 2
    assert "line 1: 'tile0/missing.npy' is not a file" in capsys.readouterr().err


def test_the_multi_band_demo_hides_its_classes_beyond_the_first_three_bands(tmp_path):
    from byol.data.demo import render_bands

    a = render_bands(0, np.random.default_rng(5))
    b = render_bands(7, np.random.default_rng(5))  # the same draws, another class
    assert a.shape == (8, 32, 32) and a.dtype == np.uint16
    assert np.array_equal(a[:3], b[:3]) and not np.array_equal(a[3:], b[3:])


def test_the_preview_shows_bands_in_false_colour(tmp_path, capsys):
    data = band_folder(tmp_path / "d", bands=6, per_class=4)
    assert main(["preview", str(data), "-o", str(tmp_path / "v.png"), "-n", "4", "--bands", "4,2,1"]) == 0
    img = Image.open(tmp_path / "v.png")
    assert img.mode == "RGB" and img.width > 4 * 16
    assert "data.pixels full" in capsys.readouterr().out
    assert main(["preview", str(data), "-o", str(tmp_path / "w.png"), "--bands", "4,9,1"]) == 2
    assert "name three of the 6 bands (0 to 5)" in capsys.readouterr().err


def test_eight_bit_settings_for_band_data_are_one_line(capsys):
    with pytest.raises(ConfigError, match="a band selection reads full-precision data"):
        from_dict({"data": {"pixels": "8-bit", "bands": [0, 1]}})
    with pytest.raises(ConfigError, match="full-precision data is read as resize or crop"):
        from_dict({"data": {"pixels": "full", "large_images": "full", "in_memory": False}})
    with pytest.raises(DataError, match="needs tifffile"):
        import byol.data.bands as bands

        orig = bands.need
        try:
            bands.need = lambda module, extra: (_ for _ in ()).throw(DataError(
                f"reading this file needs {module}, which is not installed: pip install 'byol[{extra}]'"))
            bands.read_tiff(b"II*\0")
        finally:
            bands.need = orig


def test_band_data_in_memory_augmented_in_the_workers_gets_band_views(tmp_path):
    """data.augment_on workers on full-precision data held in memory: each item's views are band
    views (standardised, never clipped to [0, 1] as 8-bit pixels' are), as on the device."""
    from byol.config import load_config
    from byol.training.data import build_data
    from byol.training.pretrain import plan_run

    data = band_folder(tmp_path / "d", bands=5, per_class=6)
    cfg = load_config(None, ["--data.path", str(data), "--data.augment_on", "workers", "--train.batch_size", "4",
                             "--data.num_workers", "0", "--train.out_dir", str(tmp_path / "run")])
    items = build_data(plan_run(cfg)).loader.dataset
    view1 = torch.stack([items[0, i].view1 for i in range(len(items))])  # SeededItems: (epoch, index)
    per_band = view1.transpose(0, 1).flatten(1)  # standardised per band: about mean 0, sd 1 in each
    assert per_band.std(dim=1).min().item() > 0.3 and per_band.mean(dim=1).abs().max().item() < 3
