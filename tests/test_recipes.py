"""Recipes by name, presets by epoch count, data-aware defaults, whole-image crops, the
evaluation centre crop, the untrained evaluation and the "did it help" verdict."""
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from byol.core.augment import AugmentConfig, BatchAugment, ViewConfig
from byol.cli import main
from byol.config import ConfigError, adapt_to_data, load_config, recipe_names
from byol.data.images import StreamImages, decode_item, list_images
from byol.evaluation.protocols import extract_features
from byol.training.pretrain import verdict

from conftest import TINY, write_folder


def test_recipes_are_selected_by_name_and_state_their_source_settings():
    assert {"cifar10", "cifar10-lightly", "cifar10-solo-lars", "demo", "imagenet"} <= set(recipe_names())
    solo = load_config("cifar10-solo-lars")
    o = solo.optim
    assert (o.name, o.base_lr, o.trust_coefficient, o.clip_lr, o.weight_decay, o.warmup_epochs) == \
        ("lars", 1.0, 0.02, True, 1e-5, 10)
    assert o.exclude_bias_and_norm and solo.train.batch_size == 256
    assert (solo.model.tau_base, solo.model.tau_final) == (0.99, 1.0)
    assert (solo.augment.view1.blur_p, solo.augment.view2.blur_p) == (0.0, 0.0)
    assert (solo.augment.view1.solarize_p, solo.augment.view2.solarize_p) == (0.0, 0.2)
    lightly = load_config("cifar10-lightly")
    assert lightly.model.tau_base == lightly.model.tau_final == 0.99  # constant momentum
    assert not lightly.optim.exclude_bias_and_norm and lightly.model.projection_hidden_dim == 1024
    for view in (lightly.augment.view1, lightly.augment.view2):  # torchvision's ColorJitter
        assert (view.brightness_mode, view.contrast_mode) == ("scale", "gray")
    assert lightly.augment.interpolation == "bilinear"  # torchvision's RandomResizedCrop
    # lightly's 0.06 x batch/128 with a 4x smaller loss gradient: 0.03 x batch/256 here
    assert lightly.optim.base_lr * 256 / 256 == pytest.approx(0.06 * 256 / 128 / 4)
    with pytest.raises(ConfigError, match="not a packaged recipe.*cifar10-lightly"):
        load_config("cifar-11")


@pytest.mark.parametrize("epochs,lr,wd,tau", [(40, 0.45, 1e-6, 0.97), (100, 0.45, 1e-6, 0.99),
                                              (300, 0.3, 1e-6, 0.99), (1000, 0.2, 1.5e-6, 0.996)])
def test_imagenet_presets_follow_the_epoch_count(epochs, lr, wd, tau):
    cfg = load_config("imagenet", ["--train.epochs", str(epochs)])
    assert (cfg.optim.base_lr, cfg.optim.weight_decay, cfg.model.tau_base) == (lr, wd, tau)
    assert cfg.notes == [f"epoch_presets: the settings for {epochs} epochs"]


@pytest.mark.parametrize("epochs,tau,heads", [(10, 0.95, 8192), (14, 0.95, 8192), (15, 0.95, 4096),
                                              (30, 0.95, 4096), (45, 0.99, 4096), (200, 0.99, 4096)])
def test_cifar10_recipe_settings_follow_the_run_length(epochs, tau, heads):
    m = load_config("cifar10", ["--train.epochs", str(epochs)]).model
    assert (m.tau_base, m.projection_hidden_dim, m.prediction_hidden_dim) == (tau, heads, heads)


def test_epoch_presets_take_the_nearest_and_yield_to_the_command_line():
    cfg = load_config("imagenet", ["--train.epochs", "200"])  # log-nearest of 100 and 300: 300
    assert cfg.optim.base_lr == 0.3 and "nearest preset to 200" in cfg.notes[0]
    cfg = load_config("imagenet", ["--train.epochs", "300", "--optim.base_lr", "0.25"])
    assert cfg.optim.base_lr == 0.25 and cfg.model.tau_base == 0.99
    assert cfg.model.backbone_args["zero_init_residual"] and cfg.data.large_images == "full"
    assert cfg.data.eval_crop == 0.875 and cfg.augment.crop_sampling == "clamp"


def test_zero_init_residual_starts_every_block_as_identity():
    from byol.core.backbones import resnet18, resnet50

    net = resnet50(zero_init_residual=True, width=0.125)
    assert all((b.bn3.weight == 0).all() for layer in (net.layer1, net.layer4) for b in layer)
    assert all((b.bn2.weight == 1).all() for b in resnet18().layer1)


def test_data_aware_defaults_change_only_what_no_one_set():
    cfg = load_config(None, ["--data.image_size", "32", "--augment.view2.blur_p", "0.5"])
    notes = adapt_to_data(cfg, 1200, grayscale=True)
    assert cfg.augment.view1.blur_p == 0.0 and cfg.augment.view2.blur_p == 0.5  # given: kept
    assert cfg.augment.view1.saturation == cfg.augment.view2.hue == cfg.augment.view1.grayscale_p == 0.0
    assert "32-px images and grayscale images" in notes[0] and "view1.blur_p: 1.0 -> 0.0" in notes[0]
    assert notes[1].startswith("1200 training images") and "more images or more epochs" in notes[1]
    big = load_config(None, ["--data.image_size", "96"])
    assert adapt_to_data(big, 50_000, grayscale=False) == [] and big.augment.view1.blur_p == 1.0


def test_a_grayscale_run_records_the_values_it_used(tmp_path):
    data = write_folder(tmp_path / "gray", classes=("a", "b"), per_class=24, size=(32, 32), mode="L")
    out = tmp_path / "run"
    assert main(["pretrain", "--data.path", str(data), "--train.epochs", "1", "--train.out_dir", str(out),
                 "--train.knn_every", "0", "--log.report", "false", *TINY]) == 0
    used = yaml.safe_load((out / "config.yaml").read_text())["augment"]
    assert used["view1"]["saturation"] == used["view2"]["hue"] == used["view1"]["blur_p"] == 0.0
    assert used["view1"]["brightness"] == 0.4  # colour operations that do something stay
    summary = json.loads((out / "summary.json").read_text())
    assert any("grayscale images" in n for n in summary["notes"])


def _three_bands(path, w=96, h=32):
    """A wide image: red left third, green middle, blue right third."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 3, 0] = 255
    arr[:, w // 3: 2 * w // 3, 1] = 255
    arr[:, 2 * w // 3:, 2] = 255
    Image.fromarray(arr).save(path)


def test_full_image_crops_reach_the_sides_of_wide_images(tmp_path):
    (tmp_path / "c").mkdir()
    _three_bands(tmp_path / "c" / "wide.png")
    images = list_images(tmp_path)
    x, aspect = decode_item(Image.open(tmp_path / "c" / "wide.png").convert("RGB"), 32, "full")
    assert x.shape == (3, 32, 32) and aspect == pytest.approx(3.0)
    full = StreamImages(images, 32, mode="full")[0]
    centre = StreamImages(images, 32, mode="resize")[0]
    assert float(full.aspect) == pytest.approx(3.0) and centre.aspect is None
    plain = ViewConfig(jitter_p=0, grayscale_p=0, blur_p=0, solarize_p=0)
    augment = BatchAugment(AugmentConfig(size=16, view1=plain, view2=plain, mean=(0, 0, 0), std=(1, 1, 1)))
    torch.manual_seed(0)
    n = 256
    v_full, _ = augment(full.images.expand(n, -1, -1, -1), aspect=torch.full((n,), float(full.aspect)))
    v_centre, _ = augment(centre.images.expand(n, -1, -1, -1))
    reds_full = (v_full[:, 0] > 0.5).flatten(1).any(1).float().mean()
    reds_centre = (v_centre[:, 0] > 0.5).flatten(1).any(1).float().mean()
    assert reds_centre == 0 and reds_full > 0.2  # the centre square never shows the red third


def test_evaluation_takes_the_centre_crop():
    x = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    x[:, :, 16:48, 16:48] = 255  # a bright centre half
    mean, std = (0, 0, 0), (1, 1, 1)
    whole = extract_features(nn.Identity(), x, mean, std, image_size=32)
    centre = extract_features(nn.Identity(), x, mean, std, image_size=32, crop=0.5)
    assert whole.mean().item() == pytest.approx(0.25, abs=0.02) and centre.mean().item() == pytest.approx(1.0)


def test_verdict_says_whether_pretraining_helped():
    cfg = load_config(None, ["--train.epochs", "5"])
    base = {"train_images": 3000, "projection_std": 0.05, "projection_std_healthy": 0.0625}
    up = verdict({**base, "knn_untrained_top1": 0.30, "knn_final_top1": 0.35}, cfg)
    assert up["helped"] is True and up["gain_points"] == pytest.approx(5.0) and "helped" in up["message"]
    down = verdict({**base, "knn_untrained_top1": 0.86, "knn_final_top1": 0.70}, cfg)
    assert down["helped"] is False and "did not help" in down["message"] and "more epochs" in down["message"]
    small = verdict({**base, "knn_untrained_top1": 0.242, "knn_final_top1": 0.244, "knn_test_images": 1000}, cfg)
    assert small["helped"] is True and small["clear"] is False and "not a clear gain" in small["message"]
    clear = verdict({**base, "knn_untrained_top1": 0.30, "knn_final_top1": 0.35, "knn_test_images": 10000}, cfg)
    assert clear["clear"] is True and "helped:" in clear["message"]
    level = verdict({**base, "knn_untrained_top1": 0.5, "knn_final_top1": 0.5}, cfg)
    assert level["helped"] is False
    blind = verdict(base, cfg)
    assert blind["helped"] is None and "No check" in blind["message"] and "not collapsed" in blind["collapse"]
    collapsed = verdict({**base, "projection_std": 0.001}, cfg)
    assert collapsed["collapse"].startswith("collapsed")


def test_untrained_network_is_evaluated_from_the_command_line(demo_data, tmp_path, capsys):
    out = tmp_path / "untrained"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--data.val_path", str(demo_data / "test"),
                 "--train.epochs", "0", "--train.out_dir", str(out), "--train.knn_every", "1",
                 "--train.precision", "32", "--log.report", "false", *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 0 and summary["verdict"]["helped"] is None
    assert "Untrained network evaluated" in capsys.readouterr().out
    ckpt = out / "checkpoints" / "last.ckpt"
    assert main(["evaluate", "knn", "--checkpoint", str(ckpt), "--train", str(demo_data / "train"),
                 "--test", str(demo_data / "test"), "-k", "10"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["top1"] == pytest.approx(summary["knn_untrained_top1"], abs=1e-6)
    assert main(["export", str(ckpt), "-o", str(tmp_path / "untrained.safetensors")]) == 0


def test_preview_shows_the_data_aware_values(tmp_path, capsys):
    data = write_folder(tmp_path / "gray", classes=("a",), per_class=4, size=(32, 32), mode="L")
    assert main(["preview", str(data), "-o", str(tmp_path / "p.png"), "-n", "4"]) == 0
    out = capsys.readouterr().out
    assert "data-aware defaults for 32-px images and grayscale images" in out
    assert "augment.view1: " in out and "saturation 0.0" in out and "blur_p 0.0" in out
