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
from byol.config import ConfigError, load_config, recipe_names
from byol.training.plan import decide
from byol.data.decode import decode_item
from byol.data.image_sets import StreamImages
from byol.data.listing import list_images
from byol.evaluation.protocols import extract_features
from byol.training.summary import verdict

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
    assert cfg.notes == [f"epoch_presets: the settings for {epochs} epochs: optim.base_lr {lr}, "
                         f"optim.weight_decay {wd}, model.tau_base {tau}"]


@pytest.mark.parametrize("epochs,tau,heads", [(10, 0.95, 8192), (14, 0.95, 8192), (15, 0.95, 4096),
                                              (30, 0.95, 4096), (45, 0.99, 4096), (200, 0.99, 4096)])
def test_cifar10_recipe_settings_follow_the_run_length(epochs, tau, heads):
    m = load_config("cifar10", ["--train.epochs", str(epochs)]).model
    assert (m.tau_base, m.projection_hidden_dim, m.prediction_hidden_dim) == (tau, heads, heads)


@pytest.mark.parametrize("epochs,schedule", [(10, {0: 24}), (14, {0: 24}), (15, {}), (30, {}), (200, {})])
def test_the_fast_cifar10_recipe_is_cifar10_with_the_resolution_schedule_up_to_14_epochs(epochs, schedule):
    """The schedule is in the 10-epoch preset: measured to keep the accuracy at 10 epochs and to
    lose it at 18 (BENCHMARKS.md, "Time to accuracy"), so longer runs are the cifar10 recipe."""
    from byol.config import to_dict

    fast, plain = (to_dict(load_config(name, ["--train.epochs", str(epochs)])) for name in ("cifar10-fast", "cifar10"))
    assert fast["train"].pop("resolution_schedule") == schedule
    assert plain["train"].pop("resolution_schedule") == {}
    assert fast["train"].pop("out_dir") == "runs/cifar10-fast" and plain["train"].pop("out_dir") == "runs/cifar10"
    assert fast["epoch_presets"][10].pop("train.resolution_schedule") == {0: 24}
    assert fast == plain  # every other setting, the epoch presets' included
    assert load_config("cifar10-fast").train.epochs == 10
    note = load_config("cifar10-fast", ["--train.epochs", str(epochs)]).notes[0]
    assert ("train.resolution_schedule" in note.partition("set by other presets only")[2]) == (schedule == {})
    set_by_hand = load_config("cifar10-fast", ["--train.epochs", "30", "--train.resolution_schedule", "{0: 28}"])
    assert set_by_hand.train.resolution_schedule == {0: 28}


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
    from conftest import make_facts

    cfg = load_config(None, ["--data.image_size", "32", "--augment.view2.blur_p", "0.5"])
    plan = decide(cfg, make_facts(train_images=1200, typical_side=None, grayscale=True))
    cfg, notes = plan.cfg, [d.note for d in plan.decisions if d.name in ("augmentation", "budget")]
    assert cfg.augment.view1.blur_p == 0.0 and cfg.augment.view2.blur_p == 0.5  # given: kept
    assert cfg.augment.view1.saturation == cfg.augment.view2.hue == cfg.augment.view1.grayscale_p == 0.0
    assert "32-px images and grayscale images" in notes[0] and "view1.blur_p: 1.0 -> 0.0" in notes[0]
    assert notes[1].startswith("budget: 1,200 images x 100 epochs") and "more images or more epochs" in notes[1]
    big = decide(load_config(None, ["--data.image_size", "96"]), make_facts(train_images=50_000, typical_side=None))
    assert not [d for d in big.decisions if d.name in ("augmentation", "budget")] and big.cfg.augment.view1.blur_p == 1.0


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
    plain = ViewConfig(jitter_p=0, grayscale_p=0, blur_p=0, solarize_p=0)
    crops = AugmentConfig(size=16, view1=plain, view2=plain, mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(0)
    stream = StreamImages(images, None, mode="full", crops=crops)
    items = [stream[0] for _ in range(256)]
    assert items[0].images.shape == items[0].partners.shape == (3, 16, 16)
    augment = BatchAugment(crops, cropped=True)  # the device flips and colours the workers' crops
    v_full, v2 = augment(torch.stack([b.images for b in items]), torch.stack([b.partners for b in items]))
    centre = StreamImages(images, 32, mode="resize")[0]
    assert centre.partners is None
    v_centre, _ = BatchAugment(crops)(centre.images.expand(256, -1, -1, -1))
    reds_full = (v_full[:, 0] > 0.5).flatten(1).any(1).float().mean()
    reds_centre = (v_centre[:, 0] > 0.5).flatten(1).any(1).float().mean()
    assert reds_centre == 0 and reds_full > 0.2  # the centre square never shows the red third
    assert not torch.equal(v_full, v2)  # the two views are two crops


def test_full_image_crops_are_rarely_upsampled(tmp_path):
    # a 500 x 375 image (ImageNet's typical size) and 224-px crops of scale 0.08-1: a crop is
    # upsampled when its box is narrower or shorter than 224 px. From the whole image that is
    # the small crops only (about 20 %); from the image squashed to 256 x 256 it was about 75 %.
    from byol.core.augment import crop_boxes, crop_from_full

    arr = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "photo.jpg")
    cfg = load_config("imagenet")
    whole, partner, _ = decode_item(str(tmp_path / "photo.jpg"), 3, cfg.data.load_size, "full", crops=cfg.augment)
    assert whole.shape == partner.shape == (3, 224, 224)
    full = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    torch.manual_seed(0)
    boxes = [crop_from_full(full, cfg.augment.view1, 224, sampling=cfg.augment.crop_sampling)[1] for _ in range(2000)]
    upsampled = np.mean([w < 224 or h < 224 for _, _, w, h in boxes])
    assert 0.1 < upsampled < 0.3
    _, _, w, h = crop_boxes(20000, 256, 256, (0.08, 1.0), (3 / 4, 4 / 3), "cpu", sampling="clamp")
    assert ((w < 224) | (h < 224)).float().mean() > 0.6  # the squashed 256 x 256 image, for comparison


def _bands_folder(root, per_class=4):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            _three_bands(root / c / f"{i}.png")
    return root


def _tiny_reader(train_crops="whole", bound=None):
    from byol.evaluation.saved import Reader

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten())
    return Reader(net, (0, 0, 0), (1, 1, 1), image_size=16, crop=1.0, channels=3, train_crops=train_crops,
                  bound=bound)


def test_evaluation_training_crops_come_from_the_whole_image(tmp_path):
    # linear-aug and finetune train on crop + flip views; from the whole wide image the crops
    # show its red left third, from the decoded centre square they never could
    from byol.core.augment import augment_view
    from byol.data.image_sets import decode_to_memory
    from byol.evaluation.protocols import crop_flip
    from byol.evaluation.saved import whole_image_crops

    train = _bands_folder(tmp_path / "train")
    torch.manual_seed(0)
    crops = whole_image_crops(str(train), _tiny_reader())
    items = [crops[0] for _ in range(256)]
    assert items[0].images.shape == (3, 16, 16) and items[0].partners is None and crops.labels.tolist() == [0] * 4 + [1] * 4
    reds = (torch.stack([b.images for b in items])[:, 0] > 128).flatten(1).any(1).float().mean()
    square = decode_to_memory(list_images(train), 32).images[:1].expand(256, -1, -1, -1).float() / 255
    reds_square = (augment_view(square, crop_flip(), 16)[:, 0] > 0.5).flatten(1).any(1).float().mean()
    assert reds > 0.2 and reds_square == 0
    assert len(crops.subset(torch.tensor([0, 5]))) == 2 and crops.subset(torch.tensor([0, 5])).labels.tolist() == [0, 1]


def test_linear_aug_and_finetune_record_their_training_crops(tmp_path):
    from byol.evaluation.saved import evaluate

    train, test = _bands_folder(tmp_path / "train"), _bands_folder(tmp_path / "test", per_class=2)
    kw = dict(train=str(train), test=str(test))
    r = evaluate("unused", "linear-aug", reader=_tiny_reader(), settings=dict(epochs=1, batch_size=4, workers=0), **kw)
    assert r["settings"]["train_crops"] == "whole" and r["train_images"] == 8 and r["test_images"] == 4
    r = evaluate("unused", "finetune", reader=_tiny_reader(bound=24),
                 settings=dict(epochs=1, batch_size=4, workers=1, label_fraction=0.5), **kw)
    assert r["settings"]["train_crops"] == "whole" and r["settings"]["load_size"] == 24 and r["train_images"] == 4
    r = evaluate("unused", "linear-aug", reader=_tiny_reader("square"), settings=dict(epochs=1, batch_size=4), **kw)
    assert r["settings"]["train_crops"] == "square" and r["train_images"] == 8
    assert "train_crops" not in evaluate("unused", "knn", reader=_tiny_reader(), settings={"k": 2}, **kw)["settings"]


def test_readers_crop_the_whole_image_where_pretraining_did(tmp_path, demo_run):
    import tarfile

    from byol.checkpoint import read_export_metadata, reader_settings, save_safetensors
    from byol.evaluation.saved import load_reader, whole_image_crops

    assert {k: reader_settings({"data": {"large_images": "full", "load_size": 512}})[k]
            for k in ("large_images", "load_size")} == {"large_images": "full", "load_size": 512}
    path = tmp_path / "b.safetensors"  # JSON values; a file exported before that holds Python literals
    save_safetensors({"w": torch.zeros(1)}, path, {"large_images": '"full"', "load_size": "512",
                                                   "hidden_layer": "'layer4'"})
    assert read_export_metadata(path) == {"large_images": "full", "load_size": 512, "hidden_layer": "layer4"}
    ckpt = str(demo_run / "checkpoints" / "last.ckpt")  # the demo resizes: square crops
    from safetensors import safe_open

    from byol.checkpoint import export_backbone

    with safe_open(str(export_backbone(ckpt, tmp_path / "e.safetensors")), "pt") as f:
        meta = f.metadata()
    assert all(json.loads(v) is not None or v == "null" for k, v in meta.items() if k != "backbone")
    assert json.loads(meta["backbone_args"]) == {"stem": "cifar", "width": 0.125}
    assert load_reader(ckpt).train_crops == "square" and load_reader(ckpt, train_crops="whole").train_crops == "whole"
    with pytest.raises(ConfigError, match="'round'"):
        load_reader(ckpt, train_crops="round")
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        tar.add(_bands_folder(tmp_path / "train"), arcname="train")
    with pytest.raises(ConfigError, match="archive.*unpack it, or give --train-crops square"):
        whole_image_crops(str(tmp_path / "t.tar"), _tiny_reader())


def test_evaluation_takes_the_centre_crop():
    x = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    x[:, :, 16:48, 16:48] = 255  # a bright centre half
    mean, std = (0, 0, 0), (1, 1, 1)
    whole = extract_features(nn.Identity(), x, mean, std, image_size=32)
    centre = extract_features(nn.Identity(), x, mean, std, image_size=32, crop=0.5)
    assert whole.mean().item() == pytest.approx(0.25, abs=0.02) and centre.mean().item() == pytest.approx(1.0)


def paired_predictions(n: int, untrained_acc: float, untrained_only: int, final_only: int):
    """Per-image correctness of an untrained and a final network on n held-out images, with the
    given discordant counts (the rest of the untrained network's hits are shared)."""
    both = round(untrained_acc * n) - untrained_only
    before = torch.zeros(n, dtype=torch.bool)
    after = torch.zeros(n, dtype=torch.bool)
    before[:both] = after[:both] = True
    before[both:both + untrained_only] = True
    after[both + untrained_only:both + untrained_only + final_only] = True
    return before, after


def summary_of(before, after, base):
    from byol.training.summary import discordant_pairs

    return {**base, "knn_untrained_top1": before.float().mean().item(),
            "knn_final_top1": after.float().mean().item(), "knn_test_images": len(before),
            "knn_paired": discordant_pairs({"untrained": before, "latest": after}, [{"epoch": 0}, {"epoch": 5}])}


def test_mcnemar_exact_matches_the_binomial_test():
    from scipy.stats import binomtest

    from byol.evaluation.protocols import mcnemar_exact

    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64) and mcnemar_exact(0, 0) == 1.0
    for b, c in ((1, 9), (40, 60), (510, 490), (3, 3), (2000, 2150)):
        assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
        assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_verdict_decides_on_the_paired_images_helped_no_change_worse():
    cfg = load_config(None, ["--train.epochs", "5"])
    base = {"train_images": 3000, "projection_std": 0.05, "projection_std_healthy": 0.0625}
    # +2 points on 10,000 images, with most images shared: a clear gain (p ~ 1e-16)
    up = verdict(summary_of(*paired_predictions(10000, 0.30, 300, 500), base), cfg)
    assert up["outcome"] == "helped" and up["helped"] is True and up["p_value"] < 1e-10
    assert up["gain_points"] == pytest.approx(2.0) and "p = " in up["message"]
    # the same +2 points when the two networks disagree on half the images: not distinguishable from chance
    noisy = verdict(summary_of(*paired_predictions(1000, 0.30, 240, 260), base), cfg)
    assert noisy["outcome"] == "no clear change" and noisy["helped"] is False and noisy["p_value"] > 0.05
    assert "may be chance" in noisy["message"] and "more images" in noisy["message"]
    assert "--config cifar10" in noisy["message"]  # the recipe for small images, when another one ran
    in_use = verdict(summary_of(*paired_predictions(1000, 0.30, 240, 260), base),
                     load_config("cifar10", ["--train.epochs", "5"]))
    assert "--config cifar10" not in in_use["message"] and "another recipe" in in_use["message"]
    # one image better is no gain
    one = verdict(summary_of(*paired_predictions(1000, 0.50, 0, 1), base), cfg)
    assert one["outcome"] == "no clear change" and one["p_value"] == 1.0
    down = verdict(summary_of(*paired_predictions(1000, 0.86, 200, 40), base), cfg)
    assert down["outcome"] == "got worse" and down["helped"] is False and "worse" in down["message"]
    assert down["p_value"] < 1e-20 and down["untrained_only"] == 200 and down["final_only"] == 40
    # accuracies without per-image results: no verdict rather than a guess
    bare = verdict({**base, "knn_untrained_top1": 0.30, "knn_final_top1": 0.35}, cfg)
    assert bare["outcome"] is None and bare["helped"] is None and "no paired test" in bare["message"]
    blind = verdict(base, cfg)
    assert blind["helped"] is None and "No check" in blind["message"] and "not collapsed" in blind["collapse"]
    collapsed = verdict({**base, "projection_std": 0.001}, cfg)
    assert collapsed["collapse"].startswith("collapsed")


def test_a_run_keeps_the_paired_results_and_its_p_value(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    paired, v = summary["knn_paired"], summary["verdict"]
    assert sum(paired.values()) == summary["knn_test_images"]
    right_before = (paired["both"] + paired["untrained_only"]) / summary["knn_test_images"]
    assert right_before == pytest.approx(summary["knn_untrained_top1"], abs=1e-6)
    assert v["outcome"] in ("helped", "no clear change", "got worse") and 0 <= v["p_value"] <= 1
    assert f"p = {v['p_value']:.2g}" in (demo_run / "report.html").read_text()


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


def test_the_lightly_recipe_has_lightlys_head_biases_and_a_per_epoch_cosine(demo_data, tmp_path):
    from byol.training.pretrain import pretrain

    cfg = load_config("cifar10-lightly", ["--data.path", str(demo_data / "train"), "--train.epochs", "3",
                                          "--train.out_dir", str(tmp_path / "l"), "--train.knn_every", "0",
                                          "--log.report", "false", "--train.precision", "32", *TINY])
    assert cfg.model.head_bias == "output" and cfg.optim.schedule_per == "epoch"

    class Rates(__import__("lightning").Callback):
        def __init__(self):
            self.lr = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.lr.append((trainer.current_epoch, trainer.optimizers[0].param_groups[0]["lr"]))

        def on_fit_end(self, trainer, pl_module):
            self.heads = [(m.bias is not None) for m in pl_module.model.online.projector if isinstance(m, nn.Linear)]
            self.heads += [(m.bias is not None) for m in pl_module.model.predictor if isinstance(m, nn.Linear)]

    rates = Rates()
    pretrain(cfg, callbacks=[rates])
    assert rates.heads == [False, True, False, True]  # lightly: no bias before BatchNorm1d, one on the output
    base = 0.03 * 32 / 256
    for epoch in range(3):  # lightly's CosineAnnealingLR(optimizer, 3), stepped at each epoch's end
        seen = {round(lr, 12) for e, lr in rates.lr if e == epoch}
        assert seen == {round(base * 0.5 * (1 + np.cos(np.pi * epoch / 3)), 12)}


def test_the_solo_learn_recipe_has_torchvisions_jitter_and_bicubic_crops():
    a = load_config("cifar10-solo-lars").augment
    for view in (a.view1, a.view2):
        assert (view.brightness_mode, view.contrast_mode) == ("scale", "gray")
        assert (view.brightness, view.contrast, view.saturation, view.hue, view.jitter_p) == (0.4, 0.4, 0.2, 0.1, 0.8)
        assert view.crop_scale == (0.08, 1.0) and view.blur_p == 0.0 and view.grayscale_p == 0.2
    assert a.interpolation == "bicubic" and (a.view1.solarize_p, a.view2.solarize_p) == (0.0, 0.2)
    assert load_config("cifar10").model.head_bias == "hidden" and load_config("cifar10").optim.schedule_per == "step"


def test_the_recipes_named_after_other_libraries_match_their_heads_and_precision():
    from byol.core.heads import MLP

    assert load_config("cifar10-solo-lars").model.head_bias == "both"  # solo-learn: nn.Linear's default bias, twice
    assert [m.bias is not None for m in MLP(8, 16, 4, bias="both") if isinstance(m, nn.Linear)] == [True, True]
    assert load_config("cifar10-lightly").train.precision == "32"  # lightly's benchmark on a CPU: fp32


def test_the_recipes_named_after_other_libraries_build_their_backbones():
    """cifar10-lightly: lightly's benchmark ResNet (no ReLU after the stem's batch norm, PyTorch's
    default initialisation); cifar10-solo-lars: solo-learn's CIFAR stem (3x3, padding 2: 34-px maps)."""
    from byol.core.backbones import BackboneError, build_backbone, resnet18

    lightly = build_backbone("resnet18", **load_config("cifar10-lightly").model.backbone_args)
    assert isinstance(lightly.relu, nn.Identity)
    stem = lightly.maxpool(lightly.relu(lightly.bn1(lightly.conv1(torch.randn(2, 3, 32, 32)))))
    assert (stem < 0).any()  # the batch norm's output goes on as it is
    torch.manual_seed(0)
    plain = resnet18(stem="cifar", init="pytorch")
    torch.manual_seed(0)
    assert torch.equal(plain.conv1.weight, nn.Conv2d(3, 64, 3, 1, 1, bias=False).weight)  # nn.Conv2d's own init
    torch.manual_seed(0)
    assert not torch.equal(resnet18(stem="cifar").conv1.weight, plain.conv1.weight)  # kaiming draws again
    solo = build_backbone("resnet18", **load_config("cifar10-solo-lars").model.backbone_args)
    assert solo.conv1.padding == (2, 2) and solo.layer1(solo.conv1(torch.randn(1, 3, 32, 32))).shape[-1] == 34
    assert solo(torch.randn(2, 3, 32, 32)).shape == (2, 512)
    with pytest.raises(BackboneError, match="init must be"):
        resnet18(init="xavier")
    with pytest.raises(BackboneError, match="CIFAR stem only"):
        resnet18(stem="imagenet", stem_padding=2)


def test_small_images_without_a_config_get_the_small_image_recipe():
    from conftest import make_facts

    facts = make_facts(train_images=4, typical_side=32)
    cfg = decide(load_config(None, ["--train.epochs", "5", "--train.batch_size", "2"]), facts).cfg
    cifar = load_config("cifar10", ["--train.epochs", "5"])
    for key in ("optim.name", "optim.base_lr", "optim.weight_decay", "optim.warmup_epochs", "model.tau_base",
                "model.projection_hidden_dim"):
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == getattr(getattr(cifar, section), name), key
    assert cfg.model.backbone_args == {"stem": "cifar"} and cfg.augment.mean == load_config(None, []).augment.mean
    assert any(n.startswith("recipe: the cifar10 recipe's settings for 32-px images") for n in cfg.notes)
    # a key on the command line stays; a user's own network keeps its arguments
    mine = decide(load_config(None, ["--optim.base_lr", "0.5", "--model.backbone", "user_nets:NoBatchNorm",
                                     "--train.batch_size", "2"]), facts).cfg
    assert mine.optim.base_lr == 0.5 and mine.optim.name == "sgd" and mine.model.backbone_args == {}


def test_the_small_image_recipe_takes_the_preset_for_the_runs_steps_not_its_epochs(tmp_path):
    from conftest import make_facts

    from byol.data.listing import ImageList
    from byol.data.sources import folder_split
    from byol.training.facts import data_spec

    cfg = load_config(None, ["--data.image_size", "32", "--train.epochs", "50"])
    listed = ImageList("photos", [f"c{i % 10}/{i}.jpg" for i in range(2000)], [i % 10 for i in range(2000)],
                       [f"c{k}" for k in range(10)])
    assert len(folder_split(data_spec(cfg), listed)[0]) == 1800  # 10 % of each class held out for the verdict
    few = decide(cfg, make_facts(train_images=1800)).cfg  # 50 epochs x 7 steps = 350 steps: the 10-epoch preset (390)
    assert few.model.tau_base == 0.95 and few.model.projection_hidden_dim == 8192
    assert any("for 9 of its epochs (351 steps; this run has about 50 x 7)" in n for n in few.notes)
    many = decide(cfg, make_facts(train_images=50_000)).cfg  # 50 x 195 steps: its 100-epoch preset
    assert many.model.tau_base == 0.99 and many.model.projection_hidden_dim == 4096
    unknown = decide(cfg, make_facts(train_images=None, typical_side=None)).cfg
    assert unknown.model.tau_base == 0.99  # no image count: by its epochs


def test_a_named_recipe_is_never_changed_and_short_runs_warm_up_for_a_share():
    from conftest import make_facts

    named = load_config("imagenet", ["--data.dataset", "folder", "--train.epochs", "5", "--data.large_images", "resize",
                                     "--data.in_memory", "true", "--data.image_size", "32", "--train.devices", "1",
                                     "--train.num_nodes", "1"])
    plan = decide(named, make_facts(train_images=2000, typical_side=32))
    assert (plan.cfg.optim, plan.cfg.model) == (named.optim, named.model)
    assert not any(d.name == "recipe" for d in plan.decisions)
    facts = make_facts(train_images=2000, typical_side=100)
    cfg = decide(load_config(None, ["--train.epochs", "5"]), facts).cfg
    assert cfg.data.image_size == 100 and cfg.optim.name == "lars" and cfg.optim.warmup_epochs == 0.5
    assert decide(load_config(None, ["--train.epochs", "200"]), facts).cfg.optim.warmup_epochs == 10
    kept = decide(load_config(None, ["--train.epochs", "5", "--optim.warmup_epochs", "3"]), facts).cfg
    assert kept.optim.warmup_epochs == 3


def test_preview_decides_as_pretrain_does_and_labels_its_rows(tmp_path, capsys):
    from PIL import Image

    from byol.training.pretrain import plan_run

    photos = write_folder(tmp_path / "photos", per_class=3, size=(300, 200))
    assert main(["preview", str(photos), "-o", str(tmp_path / "p.png"), "-n", "3", "--train.batch_size", "4"]) == 0
    shown = capsys.readouterr().out
    cfg = plan_run(load_config(None, ["--data.path", str(photos), "--train.batch_size", "4"])).cfg
    assert "data.image_size 200" in shown
    for view in ("view1", "view2"):
        line = next(line for line in shown.splitlines() if line.startswith(f"augment.{view}: "))
        assert f"blur_p {getattr(cfg.augment, view).blur_p}" in line
    grid = Image.open(tmp_path / "p.png")
    assert grid.height == 3 * 200 + 30 and grid.width == 3 * 200 + 64  # three rows at the run's 200 px, labelled


def test_a_run_from_weights_is_judged_against_the_weights_it_started_from():
    base = {"train_images": 3000, "projection_std": 0.05, "projection_std_healthy": 0.0625}
    cfg = load_config(None, ["--train.epochs", "5", "--model.init_weights", "torchvision:resnet50.IMAGENET1K_V2"])
    up = verdict(summary_of(*paired_predictions(10000, 0.30, 300, 500), base), cfg)
    assert up["outcome"] == "helped" and "against the weights you started from" in up["message"]
    assert "at the start (torchvision:resnet50.IMAGENET1K_V2)" in up["message"] and "untrained" not in up["message"]
    scratch = verdict(summary_of(*paired_predictions(10000, 0.30, 300, 500), base),
                      load_config(None, ["--train.epochs", "5"]))
    assert "untrained" in scratch["message"] and "started from" not in scratch["message"]
