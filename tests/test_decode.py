"""The fast path for photographs (byol.data.decode) and the resized cache (byol.data.cache):
the crop geometry and pixels are those of the plain path, every image kind keeps its meaning."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

import byol.data.decode as decode_module
from byol.cli.main import main
from byol.config import load_config
from byol.core.augment import ViewConfig, crop_box
from byol.data.cache import write_cache
from byol.data.decode import cut_views, decode_item, upright_size
from byol.data.listing import DataError, list_images

CROPS = load_config("imagenet").augment  # 224-px views, scale 0.08-1, aspect 3/4-4/3, DeepMind's sampling


def photo(path, width, height, seed=0, exif=None, quality=92):
    """A photo-like JPEG: a smooth random colour field with texture at several scales."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(1, 3, 6, 8, generator=g) * 255, size=(height, width), mode="bicubic",
                      align_corners=False)
    for cell in (2, 8, 32):
        grid = torch.randn(1, 3, height // cell + 2, width // cell + 2, generator=g)
        x += 6 * cell ** 0.35 * F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
    arr = x[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
    img = Image.fromarray(arr)
    kw = {"quality": quality}
    if exif is not None:
        e = Image.Exif()
        e[0x0112] = exif
        kw["exif"] = e.tobytes()
    img.save(path, **kw)
    return path


def views(path, seed, **kw):
    torch.manual_seed(seed)
    return cut_views(str(path), 3, (CROPS.view1, CROPS.view2), 224, 512, CROPS.interpolation, CROPS.crop_sampling,
                     **kw)


def test_reduced_decoding_keeps_the_boxes_and_the_pixels(tmp_path):
    path = photo(tmp_path / "big.jpg", 2000, 1500)
    diffs = []
    for seed in range(12):
        fast, boxes = views(path, seed)
        full, same_boxes = views(path, seed, reduce=False)
        assert boxes == same_boxes  # the boxes are drawn before decoding, on the full-size geometry
        diffs.append([(a.float() - b.float()).abs().mean().item() for a, b in zip(fast, full)])
    assert np.mean(diffs) < 3.0 and np.max(diffs) < 6.0, diffs  # DCT-domain scaling against full decoding


def test_the_boxes_follow_the_crop_rule(tmp_path):
    path = photo(tmp_path / "p.jpg", 500, 375)
    torch.manual_seed(3)
    _, boxes = views(path, 3)
    torch.manual_seed(3)
    expected = [crop_box(375, 500, v.crop_scale, v.crop_ratio, CROPS.crop_sampling) for v in (CROPS.view1, CROPS.view2)]
    assert boxes == expected  # core.augment.crop_box (crop_boxes' rule), on the photo's own size
    areas = []
    for seed in range(300):
        _, boxes = views(path, seed)
        for x0, y0, w, h in boxes:
            assert -1e-3 <= x0 and x0 + w <= 500 + 1e-3 and -1e-3 <= y0 and y0 + h <= 375 + 1e-3
            areas.append(w * h / (500 * 375))
    assert np.mean(areas) == pytest.approx(0.534, abs=0.03)  # DeepMind's clamp sampling, scale 0.08-1


def test_the_fast_path_matches_a_torch_resize_of_the_full_image(tmp_path):
    path = photo(tmp_path / "p.jpg", 1200, 900)
    whole = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(4 / 3, 4 / 3))  # the box is the whole photo
    (crop,), (box,) = cut_views(str(path), 3, (whole,), 224, None, "bicubic")
    assert box == pytest.approx((0, 0, 1200, 900), abs=1e-3)
    full = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float()
    reference = F.interpolate(full, size=(224, 224), mode="bicubic", antialias=True, align_corners=False)[0]
    assert (crop.float() - reference.clamp(0, 255)).abs().mean() < 2.0


def test_a_jpeg_is_decoded_only_as_large_as_the_crops_need(tmp_path, monkeypatch):
    path = photo(tmp_path / "big.jpg", 2000, 1500)
    decoded = []
    real = decode_module.decode

    def spy(*a, **k):
        image = real(*a, **k)
        decoded.append(image.size)
        return image

    monkeypatch.setattr(decode_module, "decode", spy)
    whole = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(4 / 3, 4 / 3))
    cut_views(str(path), 3, (whole,), 224, 512)
    assert decoded[-1] == (500, 375)  # 1/4: the smallest DCT scale that keeps 224 px across the whole photo
    tiny = ViewConfig(crop_scale=(0.01, 0.01), crop_ratio=(1.0, 1.0))
    cut_views(str(path), 3, (tiny,), 224, 512)
    assert decoded[-1] == (1000, 750)  # a small crop: the resolution of the photo bounded to 512 px (1/2 here)
    cut_views(str(path), 3, (tiny,), 224, None)
    assert decoded[-1] == (2000, 1500)  # no bound: full resolution for a crop that needs it


@pytest.mark.parametrize("decoder", ["pillow", "simplejpeg"])
def test_exif_orientation_is_applied_on_every_path(tmp_path, decoder):
    if decoder == "simplejpeg":
        pytest.importorskip("simplejpeg")
    path = photo(tmp_path / "turned.jpg", 600, 400, exif=6)  # stored landscape, shown portrait
    reference = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    assert upright_size(Image.open(path)) == reference.size == (400, 600)
    whole = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(2 / 3, 2 / 3))
    (crop,), (box,) = cut_views(str(path), 3, (whole,), 64, None, decoder=decoder)
    assert box == pytest.approx((0, 0, 400, 600), abs=1e-3)
    expected = torch.from_numpy(np.array(reference.resize((64, 64), Image.BICUBIC))).permute(2, 0, 1)
    assert (crop.float() - expected.float()).abs().mean() < 3.0


def test_simplejpeg_and_pillow_give_the_same_pixels(tmp_path):
    pytest.importorskip("simplejpeg")
    path = photo(tmp_path / "p.jpg", 800, 600)
    for seed in range(4):
        a, boxes_a = views(path, seed, decoder="pillow")
        b, boxes_b = views(path, seed, decoder="simplejpeg")
        assert boxes_a == boxes_b
        # both libjpeg-turbo, at the same DCT scales
        assert all((x.float() - y.float()).abs().mean() < 2.0 for x, y in zip(a, b))


def _kinds(tmp_path):
    """Files of every kind a folder of photos holds, each a known colour."""
    red = np.zeros((300, 400, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(np.full((300, 400), 90, np.uint8), "L").save(tmp_path / "gray.jpg", quality=95)
    Image.fromarray(np.full((300, 400), 32768, np.uint16)).save(tmp_path / "deep.png")  # I;16: mid-gray
    Image.fromarray(red).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(np.dstack([red, np.full((300, 400), 255, np.uint8)]), "RGBA").save(tmp_path / "alpha.png")
    return {"cmyk.jpg": (255, 0, 0), "gray.jpg": (90, 90, 90), "deep.png": (128, 128, 128),
            "palette.png": (255, 0, 0), "alpha.png": (255, 0, 0)}


def test_every_image_kind_keeps_its_meaning(tmp_path):
    for name, colour in _kinds(tmp_path).items():
        v1, v2, _ = decode_item(str(tmp_path / name), 3, 512, "full", crops=CROPS)
        assert v1.shape == v2.shape == (3, 224, 224), name
        mean = v1.float().mean(dim=(1, 2))
        assert mean.tolist() == pytest.approx(colour, abs=6), name
        gray, _, _ = decode_item(str(tmp_path / name), 1, 512, "full", crops=CROPS)
        assert gray.shape == (1, 224, 224), name


def test_the_cache_keeps_names_labels_and_crop_geometry(tmp_path, capsys):
    src = tmp_path / "src"
    for c in ("cats", "dogs"):
        (src / c).mkdir(parents=True)
    photo(src / "cats" / "big.jpg", 2000, 1500)
    photo(src / "cats" / "turned.jpg", 1200, 800, seed=1, exif=6)
    photo(src / "dogs" / "small.jpg", 400, 300, seed=2)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(src / "dogs" / "tiny.png")
    (src / "dogs" / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["cache", str(src), str(tmp_path / "dst"), "--max-side", "512"]) == 0
    assert "2 resized, 2 copied as they were, 0 unchanged since the last run, 0 removed (source gone), 1 left out" in capsys.readouterr().out
    dst = tmp_path / "dst"
    listed, cached = list_images(src), list_images(dst)
    assert cached.classes == listed.classes
    assert [(i, l) for i, l in zip(listed.items, listed.labels) if "broken" not in i] == \
        list(zip(cached.items, cached.labels))
    assert Image.open(dst / "cats" / "big.jpg").size == (512, 384)
    assert Image.open(dst / "cats" / "turned.jpg").size == (341, 512)  # upright, its EXIF turn applied
    assert (dst / "dogs" / "small.jpg").read_bytes() == (src / "dogs" / "small.jpg").read_bytes()
    marker = json.loads((dst / "byol-cache.json").read_text())
    assert marker["complete"] and marker["max_side"] == 512 and marker["skipped"] == 1
    for seed in range(6):  # the same crops, as fractions of the photo, and nearly the same pixels: small
        a, boxes_a = views(src / "cats" / "big.jpg", seed)  # crops see less of this texture's finest detail
        b, boxes_b = views(dst / "cats" / "big.jpg", seed)
        assert np.allclose(np.array(boxes_a) / 2000, np.array(boxes_b) / 512, atol=1e-3)
        assert all((x.float() - y.float()).abs().mean() < 6.0 for x, y in zip(a, b))


def test_an_interrupted_cache_resumes_and_a_foreign_folder_is_refused(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        photo(src / f"{i}.jpg", 900, 600, seed=i)
    write_cache(src, tmp_path / "dst", 256)
    (tmp_path / "dst" / "1.jpg").unlink()  # as if stopped before it was written
    state = write_cache(src, tmp_path / "dst", 256)
    assert (state["resized"], state["kept"]) == (1, 2)
    with pytest.raises(DataError, match="at --max-side 256"):
        write_cache(src, tmp_path / "dst", 512)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["cache", str(src), str(other)]) == 2
    assert "not a byol cache; give a new or empty folder" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"


def test_a_run_on_a_cache_says_so_and_streamed_runs_say_their_loader(tmp_path, capsys):
    src = tmp_path / "src"
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        for i in range(8):
            photo(src / c / f"{i}.jpg", 120, 90, seed=i)
    write_cache(src, tmp_path / "cache", 64)
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(["pretrain", "--data.path", str(tmp_path / "cache"), "--train.out_dir", str(out),
                 "--data.in_memory", "false", "--data.large_images", "full", "--data.image_size", "32",
                 "--train.epochs", "1", "--train.batch_size", "4", "--train.knn_every", "0",
                 "--model.backbone_args", "{width: 0.125}", "--model.projection_hidden_dim", "32",
                 "--model.prediction_hidden_dim", "32", "--log.report", "false"]) == 0
    said = capsys.readouterr().out
    assert f"is a resized copy of {str(src.resolve())!r}: longer side at most 64 px" in said
    assert "loader: 1 worker process" in said or "loader: " in said and "worker processes" in said
    assert "images/s" in said
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["data_wait_share"] <= 1 and summary["data_wait_seconds"] >= 0


def test_workers_follow_the_cores():
    from byol.training.plan import loader_workers

    assert loader_workers(None, 16, 1)[0] == 15
    assert loader_workers(None, 16, 4)[0] == 3  # four training processes share the machine's cores
    assert loader_workers(None, 2, 1)[0] == 1
    assert loader_workers(5, 2, 1) == (5, "data.num_workers 5")


def test_a_decoder_that_is_not_installed_is_one_line(monkeypatch, tmp_path, capsys):
    real = __import__("importlib.util").util.find_spec
    monkeypatch.setattr("byol.config.importlib.util.find_spec", lambda name: None if name == "simplejpeg" else real(name))
    assert main(["pretrain", "--data.path", str(tmp_path), "--data.jpeg_decoder", "simplejpeg", "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.jpeg_decoder = 'simplejpeg': simplejpeg is not installed" in err[0]


def test_a_box_is_mapped_by_the_decodes_own_scale(tmp_path):
    """A JPEG decoded at n/8 is ceil(W n / 8) wide: mapping boxes by that width over W stretched
    them toward the rounded-up edge (a bias of about half a grey level on this gradient, where
    a decoded pixel is 8 of the photo's). Mapped by n/8, the reduced decode's crops agree with
    the full decode's."""
    from byol.data.decode import decode_scale

    assert decode_scale(1009, 601, 127, 76) == 1 / 8 and decode_scale(1009, 601, 379, 226) == 3 / 8
    assert decode_scale(1009, 601, 1009, 601) == 1.0
    width, height = 1009, 601
    ramp = np.tile((np.arange(width) * 255 / (width - 1)).astype(np.uint8), (height, 1))
    Image.fromarray(np.stack([ramp] * 3, -1)).save(tmp_path / "ramp.jpg", quality=98)
    view = ViewConfig(crop_scale=(0.1, 0.12))
    bias = []
    for seed in range(40):
        torch.manual_seed(seed)
        (fast,), _ = cut_views(str(tmp_path / "ramp.jpg"), 3, (view,), 32, None, "bilinear", decoder="pillow")
        torch.manual_seed(seed)
        (full,), _ = cut_views(str(tmp_path / "ramp.jpg"), 3, (view,), 32, None, "bilinear", decoder="pillow",
                               reduce=False)
        bias.append(float(fast.float().mean() - full.float().mean()))
    assert abs(np.mean(bias)) < 0.15 and np.max(np.abs(bias)) < 0.6, bias
