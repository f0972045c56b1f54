"""Photos cropped on the training device (data.crop_on device): the workers decode each photo and
draw its two boxes, the device cuts and resizes them (core.augment.crop_resize). Its resize is
Pillow's antialiased one, its crops and views come from the same distribution as the workers'
(Pillow, per image) on the same files and seeds, the plan says where the crops are cut and why,
and a streamed run trains on it and resumes exactly mid-epoch."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from byol.checkpoint import load_checkpoint
from byol.cli import main
from byol.config import ConfigError, from_dict
from byol.core.augment import AugmentConfig, BatchAugment, ViewConfig, crop_resize
from byol.data.batch import collate
from byol.data.image_sets import StreamImages
from byol.data.listing import list_images
from byol.training.plan import decide
from conftest import make_facts
from test_decode import photo

# Pillow resizes in two 8-bit passes (rows, then columns) and rounds between them; the device
# resizes in float. Measured on the zone plate below: mean 0.3, largest 1.1 grey levels.
PILLOW_MEAN_ERROR, PILLOW_MAX_ERROR = 0.5, 2.0


def zone_plate(height: int, width: int) -> np.ndarray:
    """A zone plate: cos(k r^2), its frequency rising to the Nyquist limit at the far corner; any
    resize that drops its antialiasing turns the fine rings into coarse false ones."""
    y, x = np.mgrid[:height, :width].astype(np.float64)
    r2 = (x - width / 2) ** 2 + (y - height / 2) ** 2
    k = np.pi / (2 * max(height, width) / 2 * 1.42)  # the local frequency k r reaches pi/2 per pixel at the corner
    return np.round(127.5 + 127.5 * np.cos(k * r2)).astype(np.uint8)


# (x0, y0, w, h) boxes of the 384 x 512 plate and the side they are resized to: shrunk about 3x, 8x
# and 1.3x, enlarged 2x, and fractional edges as the workers' boxes have
BOXES = [((10.3, 20.7, 200.0, 190.0), 64), ((0.0, 0.0, 512.0, 384.0), 64), ((100.5, 50.25, 84.0, 90.0), 64),
         ((5.0, 5.0, 30.0, 40.0), 64), ((300.2, 100.9, 211.8, 283.1), 96)]


def pillow_mismatch(resize, kernel: str) -> tuple[float, float]:
    """(mean, largest) absolute difference in grey levels between `resize` (crop_resize's
    signature) and Pillow's resize(box=...) over BOXES on the zone plate, the plate placed on a
    larger canvas filled with white (pixels outside it must never be read)."""
    plate = zone_plate(384, 512)
    canvas = torch.full((1, 3, 400, 530), 255, dtype=torch.uint8)
    canvas[0, :, :384, :512] = torch.from_numpy(plate)
    pil = Image.fromarray(plate)
    errors = []
    for (x0, y0, w, h), size in BOXES:
        ref = np.asarray(pil.resize((size, size), getattr(Image.Resampling, kernel.upper()),
                                    box=(x0, y0, x0 + w, y0 + h)), dtype=np.float64)
        ours = resize(canvas, torch.tensor([[384, 512]]), torch.tensor([[x0, y0, w, h]]), size, kernel)[0, 0]
        errors.append(np.abs(ours.double().numpy() * 255 - ref))
    return float(np.mean([e.mean() for e in errors])), float(max(e.max() for e in errors))


@pytest.mark.parametrize("kernel", ["bicubic", "bilinear"])
def test_the_device_resize_matches_pillows_antialiased_resize_on_a_zone_plate(kernel):
    mean, largest = pillow_mismatch(crop_resize, kernel)
    assert mean <= PILLOW_MEAN_ERROR and largest <= PILLOW_MAX_ERROR, (mean, largest)
    # the same check on a resize without antialiasing (a plain sample, as grid_sample gives): it fails
    plain = pillow_mismatch(lambda *a: crop_resize(*a, antialias=False), kernel)
    assert plain[0] > PILLOW_MEAN_ERROR * 5, plain


def gradient_photo(path, width: int, height: int) -> None:
    """A JPEG whose red channel is its x coordinate and green its y (0-255 across): a crop's
    pixels say where its box was."""
    y, x = np.mgrid[:height, :width]
    arr = np.stack([255 * x / (width - 1), 255 * y / (height - 1), np.full_like(x, 128, dtype=float)], -1)
    Image.fromarray(arr.round().astype(np.uint8)).save(path, quality=95)


GEOMETRY_ONLY = ViewConfig(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0, blur_p=0.0,
                           solarize_p=0.0)


def views(folder, crops: AugmentConfig, device: bool, epochs: int, seed: int = 0, broken=None):
    """Both views, [0, 1], of every file of `folder` `epochs` times, from the workers' path (Pillow
    crops) or the device's (boxes, crop_resize), with the same seeds: the box draws (seed) and the
    device's flips and colours (seed + 1). `broken`: a function applied to the boxes (a test of
    the test)."""
    data = StreamImages(list_images(folder), None, 3, "full", crops=crops, decoder="pillow", device_crops=device)
    torch.manual_seed(seed)
    batch = collate([data[i] for _ in range(epochs) for i in range(len(data))])
    augment = BatchAugment(crops, cropped=True)
    torch.manual_seed(seed + 1)
    if device:
        boxes = batch.boxes if broken is None else broken(batch.boxes)
        v1, v2 = augment.from_boxes(batch.images, batch.extents, boxes)
    else:
        v1, v2 = augment(batch.images, batch.partners)
    mean, std = torch.tensor(crops.mean).view(1, 3, 1, 1), torch.tensor(crops.std).view(1, 3, 1, 1)
    return [v * std + mean for v in (v1, v2)]


def geometry(view: torch.Tensor) -> dict:
    """Each crop's box and flip as its gradient pixels tell them: area fraction, centre (x, y) as
    fractions of the photo, mirrored or not."""
    r, g = view[:, 0], view[:, 1]
    width = (r.amax(dim=(1, 2)) - r.amin(dim=(1, 2))).clamp(min=0)
    height = (g.amax(dim=(1, 2)) - g.amin(dim=(1, 2))).clamp(min=0)
    return {"area": (width * height).numpy(), "x": r.mean(dim=(1, 2)).numpy(), "y": g.mean(dim=(1, 2)).numpy(),
            "mirrored": (r[:, :, -1].mean(1) < r[:, :, 0].mean(1)).numpy()}


def compare_paths(photos, crops, epochs, broken=None) -> list[str]:
    """What differs between the two paths' views of the same files with the same seeds: the
    histograms of crop area and centre (10 bins), the share mirrored, each crop's pixels."""
    old, new = views(photos, crops, False, epochs), views(photos, crops, True, epochs, broken=broken)
    problems = []
    for v, (a, b) in enumerate(zip(old, new), 1):
        ga, gb = geometry(a), geometry(b)
        for name in ("area", "x", "y"):
            ha, _ = np.histogram(ga[name], bins=10, range=(0, 1))
            hb, _ = np.histogram(gb[name], bins=10, range=(0, 1))
            if np.abs(ha - hb).sum() > 0.05 * len(ga[name]):  # a crop on a bin's edge may fall either side
                problems.append(f"view {v}: {name} histograms {ha.tolist()} != {hb.tolist()}")
        if ga["mirrored"].mean() != gb["mirrored"].mean():
            problems.append(f"view {v}: mirrored {ga['mirrored'].mean():.3f} != {gb['mirrored'].mean():.3f}")
        worst = (a - b).abs().mean(dim=(1, 2, 3)).max().item() * 255
        if worst > 2.0:
            problems.append(f"view {v}: a crop differs by {worst:.1f} grey levels on average")
    return problems


@pytest.fixture(scope="module")
def gradient_photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradients")
    for i, (w, h) in enumerate([(200, 150), (150, 200), (120, 120), (320, 180)] * 6):
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        gradient_photo(root / f"c{i % 2}" / f"{i}.jpg", w, h)
    return root


def test_the_devices_crops_and_flips_are_the_workers_on_the_same_files_and_seeds(gradient_photos):
    crops = AugmentConfig(size=48, view1=GEOMETRY_ONLY, view2=GEOMETRY_ONLY)
    assert compare_paths(gradient_photos, crops, epochs=5) == []


@pytest.mark.parametrize("broken", ["x and y swapped", "view 1's and view 2's boxes swapped"])
def test_the_comparison_finds_boxes_used_wrongly(gradient_photos, broken):
    crops = AugmentConfig(size=48, view1=GEOMETRY_ONLY, view2=GEOMETRY_ONLY)
    swap = {"x and y swapped": lambda b: b[:, :, [1, 0, 3, 2]], "view 1's and view 2's boxes swapped":
            lambda b: b[:, [1, 0]]}[broken]
    assert compare_paths(gradient_photos, crops, epochs=2, broken=swap) != []


def test_the_views_pixel_statistics_match_with_the_papers_augmentations(tmp_path):
    for i in range(16):
        (tmp_path / f"c{i % 2}").mkdir(exist_ok=True)
        photo(tmp_path / f"c{i % 2}" / f"{i}.jpg", 160 if i % 3 else 100, 120, seed=i)
    crops = AugmentConfig(size=40)  # the paper's views: colour, grayscale, blur, solarization
    old, new = views(tmp_path, crops, False, 4), views(tmp_path, crops, True, 4)
    for a, b in zip(old, new):
        assert torch.allclose(a.mean(dim=(0, 2, 3)), b.mean(dim=(0, 2, 3)), atol=0.003)
        assert torch.allclose(a.std(dim=(0, 2, 3)), b.std(dim=(0, 2, 3)), atol=0.003)


def test_a_batch_of_photos_of_many_sizes_is_one_padded_canvas(tmp_path):
    for i, (w, h) in enumerate([(90, 60), (60, 90), (70, 70)]):
        photo(tmp_path / f"{i}.jpg", w, h, seed=i)
    data = StreamImages(list_images(tmp_path), None, 3, "full", crops=AugmentConfig(size=32), decoder="pillow",
                        device_crops=True)
    batch = collate([data[i] for i in range(3)])
    assert batch.images.shape == (3, 3, 90, 90) and batch.images.dtype == torch.uint8
    assert sorted(map(tuple, batch.extents.tolist())) == [(60, 90), (70, 70), (90, 60)]
    assert batch.boxes.shape == (3, 2, 4)
    right = batch.boxes[..., 0] + batch.boxes[..., 2]  # every box inside its own photo, not the canvas
    bottom = batch.boxes[..., 1] + batch.boxes[..., 3]
    assert (right <= batch.extents[:, None, 1] + 1e-3).all() and (bottom <= batch.extents[:, None, 0] + 1e-3).all()
    assert len(batch.pin_memory() if torch.cuda.is_available() else batch.to("cpu")) == 3


# -- the plan ---------------------------------------------------------------------------------

FULL = {"data": {"path": "photos", "large_images": "full", "in_memory": False, "image_size": 224}}
MEASURED = {"cpu_kind": "AVX2 only", "device_images_per_s": 20.0, "workers_images_per_s": 30.0, "faster": "workers",
            "what": "a test"}


def test_the_plan_says_where_the_crops_are_cut_and_why():
    gpu = decide(from_dict(FULL), make_facts(typical_side=375, cuda=True))
    assert gpu.crop_on == "device" and "on a GPU" in gpu.crop_reason
    assert any(n.startswith("crops: each view's crop cut and resized on the training device") for n in gpu.lines())
    cpu = decide(from_dict(FULL), make_facts(typical_side=375, crop_speeds=[MEASURED]))
    assert cpu.crop_on == "workers" and "20 training images/s with the device's crops against 30" in cpu.crop_reason
    faster = {**MEASURED, "device_images_per_s": 40.0, "faster": "device"}
    assert decide(from_dict(FULL), make_facts(typical_side=375, crop_speeds=[faster])).crop_on == "device"
    unmeasured = decide(from_dict(FULL), make_facts(typical_side=375))
    assert unmeasured.crop_on == "workers" and "no end-to-end measurement" in unmeasured.crop_reason
    workers = {"data": {**FULL["data"], "augment_on": "workers"}}
    assert decide(from_dict(workers), make_facts(typical_side=375, cuda=True)).crop_on == "workers"
    nearest = {**FULL, "augment": {"interpolation": "nearest"}}
    assert decide(from_dict(nearest), make_facts(typical_side=375, cuda=True)).crop_on == "workers"
    asked = {"data": {**FULL["data"], "crop_on": "workers"}}
    assert decide(from_dict(asked), make_facts(typical_side=375, cuda=True)).crop_on == "workers"
    resized = decide(from_dict({"data": {"path": "photos"}}), make_facts(typical_side=375, cuda=True))
    assert resized.crop_on is None and not any(n.startswith("crops:") for n in resized.lines())


@pytest.mark.parametrize("settings, said", [
    ({"data": {"crop_on": "device"}}, "data.crop_on = 'device': it places the crops taken from whole photos"),
    ({"data": {**FULL["data"], "crop_on": "device", "augment_on": "workers"}},
     "data.augment_on workers makes both views in the workers"),
    ({**FULL, "data": {**FULL["data"], "crop_on": "device"}, "augment": {"interpolation": "nearest"}},
     "augment.interpolation nearest needs data.crop_on workers"),
])
def test_a_crop_placement_that_cannot_serve_is_one_line(settings, said):
    with pytest.raises(ConfigError, match=said):
        from_dict(settings)


# -- a streamed run ---------------------------------------------------------------------------

def run_args(photos, out, crop_on, *extra):
    return ["pretrain", "--data.path", str(photos), "--train.out_dir", str(out), "--data.in_memory", "false",
            "--data.large_images", "full", "--data.crop_on", crop_on, "--data.image_size", "16",
            "--data.num_workers", "1", "--train.epochs", "1", "--train.batch_size", "100", "--train.knn_every", "0",
            "--train.threads", "1", "--model.backbone_args", "{width: 0.125, stem: cifar}",
            "--model.projection_hidden_dim", "32", "--model.prediction_hidden_dim", "32", "--model.projection_dim",
            "16", "--log.report", "false", "--log.progress", "false", "--log.tensorboard", "false", *extra]


@pytest.fixture(scope="module")
def two_thousand_photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    for i in range(2000):
        (root / f"c{i % 4}").mkdir(exist_ok=True)
        photo(root / f"c{i % 4}" / f"{i}.jpg", 48 if i % 3 else 32, 36 if i % 3 else 44, seed=i)
    return root


def model_weights(out):
    state = load_checkpoint(out / "checkpoints" / "last.ckpt")["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("model.")}


@pytest.mark.parametrize("crop_on", ["device", "workers"])
def test_a_streamed_run_of_2000_photos_trains_and_resumes_exactly_mid_epoch(two_thousand_photos, tmp_path, capsys,
                                                                            crop_on):
    """Every draw a data worker makes for an item (its crop boxes) follows from the run's seed,
    the epoch and the item (byol.data.loader.SeededItems): the resumed run reads the rest of the
    epoch as the whole run did."""
    whole = tmp_path / "whole"
    assert main(run_args(two_thousand_photos, whole, crop_on)) == 0
    said = capsys.readouterr().out
    where = "on the training device" if crop_on == "device" else "in the data workers by Pillow"
    assert f"crops: each view's crop cut and resized {where}" in said
    assert ("the training device cuts their crops" in said) == (crop_on == "device")
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["train_images"] == 2000 and np.isfinite(summary["final_loss"])

    killed = tmp_path / "killed"
    args = run_args(two_thousand_photos, killed, crop_on, "--train.checkpoint_every_steps", "2", "--train.keep_checkpoints", "20")
    proc = subprocess.Popen([sys.executable, "-m", "byol.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step-00000006.ckpt").exists():  # 6 of the epoch's 20 steps
        assert proc.poll() is None and time.time() < deadline, "the run ended before its step-6 checkpoint"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(killed / "checkpoints" / "last.ckpt")["global_step"]
    assert 0 < step < 20, step
    assert main([*args, "--resume"]) == 0
    a, b = model_weights(whole), model_weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-identical on the CPU
