"""The levers that cut time to accuracy: the resolution schedule (progressive resizing) and
multi-crop's small views, from the core functions to a short run."""
import csv

import pytest
import torch

from byol.config import ConfigError, load_config
from byol.core.augment import AugmentConfig, BatchAugment, ViewConfig, augment_view, resize_views, scheduled_size
from byol.core.backbones import resnet18
from byol.core.loss import byol_loss, regression_loss, small_crops_loss
from byol.core.model import BYOL

SCHEDULE = {0.0: 16, 0.5: 24, 0.75: 32}


def test_the_resolution_schedule_gives_each_epoch_its_side():
    sides = [scheduled_size(SCHEDULE, e / 8, 32) for e in range(8)]
    assert sides == [16, 16, 16, 16, 24, 24, 32, 32]
    assert scheduled_size({0.5: 24}, 0.25, 32) == 32  # before the first start: the full side
    assert scheduled_size({}, 0.9, 32) == 32


def test_views_come_at_the_asked_side_and_small_crops_at_theirs():
    aug = BatchAugment(AugmentConfig(size=32, small_crops=3))
    images = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    v1, v2 = aug(images, size=16)
    assert v1.shape == v2.shape == (6, 3, 16, 16)
    assert [v.shape for v in aug(images)] == [(6, 3, 32, 32)] * 2
    small = aug.small_views(images)
    assert len(small) == 3 and all(v.shape == (6, 3, 16, 16) for v in small)
    assert not torch.equal(small[0], small[1])  # each small crop its own draw
    assert BatchAugment(AugmentConfig(size=32, small_crops=1, small_size=8)).small_views(images)[0].shape[-1] == 8
    # views made elsewhere (the data workers, whole-image crops) are resized to the side
    cropped = BatchAugment(AugmentConfig(size=32), cropped=True)
    crops = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert [v.shape[-1] for v in cropped(crops, crops, size=24)] == [24, 24]
    ready = torch.rand(2, 3, 32, 32)
    assert resize_views((ready,), 32)[0] is ready and resize_views((ready,), 16)[0].shape == (2, 3, 16, 16)


def test_a_view_below_the_full_side_is_the_full_view_shrunk_without_aliasing():
    # A 1-pixel checkerboard, the whole image as the crop, no colour: shrunk as a resize does
    # it, every pixel is the mean grey; sampled straight at 24 or 12 px, a moire pattern.
    plain = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                       blur_p=0.0)
    cfg = AugmentConfig(size=32, view1=plain, view2=plain, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    i = torch.arange(32)
    board = (((i[:, None] + i[None, :]) % 2) * 255).to(torch.uint8).expand(2, 3, 32, 32).contiguous()
    for side in (24, 12):
        assert augment_view(board.float() / 255, plain, side).std() > 0.2  # what straight sampling gives
        views = BatchAugment(cfg)(board, size=side)
        assert all(v.shape[-1] == side and (v - 0.5).abs().max() < 0.1 for v in views)
    small = BatchAugment(AugmentConfig(size=32, view1=plain, view2=plain, small=plain, small_crops=1, mean=cfg.mean,
                                       std=cfg.std)).small_views(board)
    assert (small[0] - 0.5).abs().max() < 0.1  # the small crops too
    # the scheduled views are drawn as the full-size views are: the same seed, the same views shrunk
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    aug = BatchAugment(AugmentConfig(size=32))
    torch.manual_seed(0)
    full = aug(images)
    torch.manual_seed(0)
    assert all(torch.allclose(a, b) for a, b in zip(aug(images, size=16), resize_views(full, 16)))


def test_the_small_crops_loss_regresses_each_small_crop_onto_both_full_views_targets():
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 8), torch.randn(5, 8)
    q = torch.randn(5, 8, requires_grad=True)
    loss = small_crops_loss([q, q], z1, z2)
    one = (regression_loss(q, z1) + regression_loss(q, z2)).mean()
    assert torch.allclose(loss, 2 * one)  # summed over the crops and the two targets
    assert float(small_crops_loss([z1.clone()], z1, z2)) == pytest.approx(float(regression_loss(z1, z2).mean()),
                                                                           abs=1e-5)  # its own target costs 0
    assert float(small_crops_loss([], z1, z2)) == 0.0
    loss.backward()
    assert q.grad is not None and z1.grad is None  # the targets get no gradient
    # symmetric in the two full views
    assert torch.allclose(small_crops_loss([q], z1, z2), small_crops_loss([q], z2, z1))


def tiny_byol():
    torch.manual_seed(0)
    return BYOL(resnet18(stem="cifar", width=0.125), image_size=32, projection_dim=16, projection_hidden_dim=32,
                prediction_hidden_dim=32)


def test_small_crops_train_the_online_network_but_leave_running_bn_statistics_to_the_full_views():
    aug = BatchAugment(AugmentConfig(size=32, small_crops=2))
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(1)
    v1, v2 = aug(images)
    small = aug.small_views(images)
    plain, multi = tiny_byol(), tiny_byol()
    loss_plain, _ = plain.step(v1, v2)
    loss_multi, _ = multi.step(v1, v2, small)
    assert loss_multi > loss_plain  # the small crops' terms are added
    stats = [(a.running_mean, b.running_mean) for a, b in zip(plain.online.modules(), multi.online.modules())
             if isinstance(a, torch.nn.BatchNorm2d)]
    assert stats and all(torch.equal(a, b) for a, b in stats)  # as if the small crops were never seen
    loss_multi.backward()
    assert all(p.grad is not None for p in multi.online.net.parameters() if p.requires_grad)
    assert all(p.grad is None for p in multi.target.parameters())
    assert multi.online.net.bn1.momentum == plain.online.net.bn1.momentum  # restored after the small crops
    with torch.no_grad():  # the full views' pairs are the plain loss: the small crops' terms come on top
        q1, q2 = multi._online_predictions(v1, v2)
        z1, z2 = multi._two_views(multi.target, v1, v2)
    assert torch.allclose(byol_loss(q1, q2, z1, z2), loss_plain, atol=1e-5)


def test_the_config_refuses_what_the_levers_cannot_do_in_one_line():
    with pytest.raises(ConfigError, match=r"train.resolution_schedule = \{1.5: 16\}: each start is a fraction"):
        load_config(None, ["--train.resolution_schedule", "{1.5: 16}"])
    with pytest.raises(ConfigError, match="augment.small_crops = 2: the small crops are made on the training device"):
        load_config(None, ["--augment.small_crops", "2", "--data.augment_on", "workers"])
    with pytest.raises(ConfigError, match="augment.small_size = 4: must be 0"):
        load_config(None, ["--augment.small_size", "4"])


class FixedSizeNet(torch.nn.Module):
    """Features that depend on the input size: a flatten after the convolution."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x).flatten(1)


def test_a_network_whose_features_change_with_the_side_is_refused_before_training(tmp_path):
    from byol.training.module import BYOLModule

    cfg = load_config(None, ["--train.resolution_schedule", "{0: 16}", "--model.projection_hidden_dim", "16",
                             "--model.prediction_hidden_dim", "16", "--train.out_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match=r"features are 256-d on 16 x 16 views but 1024-d at the side it was built for.*\(data.image_size 32") as e:
        BYOLModule(FixedSizeNet(), cfg)
    assert str(e.value).endswith("or train at one side: --train.resolution_schedule '{}' --augment.small_crops 0")


def test_the_plan_line_says_the_sides_per_epoch_and_the_small_crops_cost():
    from conftest import make_facts

    from byol.training.plan import decide

    def plan_line(cfg, images):
        return decide(cfg, make_facts(train_images=images, typical_side=None)).lines()[-1]

    cfg = load_config("cifar10", ["--train.resolution_schedule", "{0: 16, 0.5: 24, 0.75: 32}",
                                  "--augment.small_crops", "4", "--train.epochs", "8"])
    line = plan_line(cfg, 10_000)
    assert "views at 16 px (epochs 1-4), 24 px (epochs 5-6), 32 px (epochs 7-8): 0.52x the pixels of 32 px" in line
    assert "16 px is below 2/3 of 32 px" in line  # the start that measured worse is said to be
    ramp = plan_line(load_config("cifar10", ["--train.resolution_schedule", "{0: 24, 0.5: 28, 0.75: 32}",
                                             "--train.epochs", "8"]), 10_000)
    assert "views at 24 px (epochs 1-4), 28 px (epochs 5-6), 32 px (epochs 7-8): 0.72x the pixels" in ramp
    assert "below 2/3" not in ramp
    fast = plan_line(load_config("cifar10-fast", ["--train.epochs", "8"]), 10_000)
    assert "views at 24 px (epochs 1-8): 0.56x the pixels of 32 px throughout; the run ends below" in fast
    assert "+ 4 small crops of 16 px: about +73 % compute over the run and +50 % activation memory at 32 px" in line
    plain = load_config("cifar10", ["--augment.small_crops", "4", "--train.epochs", "8"])
    assert "about +38 % compute over the run" in plan_line(plain, 10_000)  # 4 x 3 x 16^2 / (2 x 4 x 32^2)
    assert "views at" not in plan_line(load_config("cifar10", ["--train.epochs", "8"]), 10_000)
    short = load_config("cifar10", ["--train.resolution_schedule", "{0: 16}", "--train.epochs", "2"])
    assert "ends below data.image_size 32 px" in plan_line(short, 10_000)


def test_a_run_with_both_levers_trains_at_each_side_and_the_knn_monitor_runs_at_every_epoch(demo_data, tmp_path):
    from byol.training.pretrain import pretrain

    out = tmp_path / "run"
    cfg = load_config("demo", ["--data.path", str(demo_data / "train"), "--data.val_path", str(demo_data / "test"),
                               "--data.limit", "64", "--train.batch_size", "32", "--train.epochs", "4",
                               "--train.knn_every", "1", "--train.log_every", "1", "--train.out_dir", str(out),
                               "--train.resolution_schedule", "{0: 16, 0.5: 24, 0.75: 32}", "--augment.small_crops", "2",
                               "--log.tensorboard", "false", "--log.report", "false", "--log.progress", "false"])
    summary = pretrain(cfg)
    rows = list(csv.DictReader(open(out / "csv" / "metrics.csv")))
    sides = {}
    for r in rows:
        if r.get("train/view_size"):
            sides.setdefault(int(r["epoch"]), set()).add(float(r["train/view_size"]))
    assert sides == {0: {16.0}, 1: {16.0}, 2: {24.0}, 3: {cfg.data.image_size}}
    import json

    history = json.loads((out / "knn.json").read_text())
    epochs = [h["epoch"] for h in history["history"]] if isinstance(history, dict) else [h["epoch"] for h in history]
    assert len(epochs) >= 4  # the monitor ran after every epoch, at every side
    assert summary["knn_final_top1"] is not None and 0.0 <= summary["knn_final_top1"] <= 1.0
