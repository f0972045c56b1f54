
import pytest
import torch
from torch import nn

from byol import BYOL
from byol.core.backbones import resnet18
from byol.core.optim import LARS, WarmupCosine, build_optimizer, is_excluded, param_groups, scaled_lr


def test_lars_exclusions_by_what_a_parameter_is():
    m = BYOL(resnet18(stem="cifar", width=0.125), image_size=16, projection_hidden_dim=32,
             prediction_hidden_dim=32)
    trainable = m.trainable_modules()
    groups = param_groups(trainable, 1e-5)
    excluded = {id(p) for p in groups[1]["params"]}
    names = {n for n, p in trainable.named_parameters() if id(p) in excluded}
    # names that a substring rule (".bn", ".bias") would miss
    assert "0.projector.1.weight" in names  # the projector's BatchNorm1d
    assert "0.net.layer2.0.downsample.1.weight" in names  # ResNet downsample BN
    assert "0.net.bn1.weight" in names and "1.0.bias" in names
    assert all(p.ndim > 1 for p in groups[0]["params"])
    assert groups[1]["weight_decay"] == 0.0 and groups[1]["lars_exclude"] is True
    # the target is not optimised
    assert not any(p is q for p in m.target.parameters() for g in groups for q in g["params"])


def test_lars_step_matches_formula():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3))
    b = nn.Parameter(torch.randn(4))
    w.grad, b.grad = torch.randn(4, 3), torch.randn(4)
    w0, b0, gw, gb = w.detach().clone(), b.detach().clone(), w.grad.clone(), b.grad.clone()
    opt = LARS([{"params": [w], "weight_decay": 0.1, "lars_exclude": False},
                {"params": [b], "weight_decay": 0.0, "lars_exclude": True}], lr=0.5, trust_coefficient=0.01)
    opt.step()
    d = gw + 0.1 * w0
    d = d * 0.01 * w0.norm() / d.norm()
    assert torch.allclose(w.detach(), w0 - 0.5 * d, atol=1e-6)
    assert torch.allclose(b.detach(), b0 - 0.5 * gb, atol=1e-6)  # no decay, no trust ratio
    # momentum: second step adds 0.9 * previous
    w.grad = gw.clone()
    b.grad = gb.clone()
    opt.step()
    assert torch.allclose(b.detach(), b0 - 0.5 * gb - 0.5 * (0.9 * gb + gb), atol=1e-6)


def test_zero_norm_weights_use_ratio_one():
    w = nn.Parameter(torch.zeros(2, 2))
    w.grad = torch.ones(2, 2)
    LARS([w], lr=1.0, momentum=0.0).step()
    assert torch.allclose(w.detach(), -torch.ones(2, 2))


def test_warmup_cosine_has_its_half_factor():
    f = WarmupCosine(10, 110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)  # not 2.0: the 0.5 factor is there
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0, abs=1e-9)
    assert max(f(k) for k in range(200)) <= 1.0


def test_lr_scales_with_global_batch():
    assert scaled_lr(0.2, 4096) == pytest.approx(3.2)
    assert scaled_lr(1.0, 128) == pytest.approx(0.5)


def test_adam_with_lars_rate_warns_and_unknown_name_fails():
    m = nn.Linear(3, 3)
    with pytest.warns(UserWarning, match="collapse"):
        build_optimizer(m, "adam", 1.0, 0.0)
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        build_optimizer(m, "rmsprop", 0.1, 0.0)
    assert is_excluded(m.bias) and not is_excluded(m.weight)


def test_lars_clip_lr_caps_the_adaptive_rate_at_the_scheduled_one():
    # solo-learn's clip_lr: effective rate min(eta ||w|| / ||d||, lr), momentum 0 to read it off
    torch.manual_seed(0)
    big = nn.Parameter(torch.randn(8, 8) * 10)  # large ||w||/||g||: eta * ratio > lr -> capped at lr
    small = nn.Parameter(torch.randn(8, 8) * 0.01)  # small ratio: eta * ratio < lr -> adaptive
    for p in (big, small):
        p.grad = torch.randn(8, 8)
    w_big, w_small, g_big, g_small = big.detach().clone(), small.detach().clone(), big.grad.clone(), small.grad.clone()
    eta, lr = 0.02, 0.1
    LARS([big, small], lr=lr, momentum=0.0, trust_coefficient=eta, clip_lr=True).step()
    adaptive_big = eta * w_big.norm() / g_big.norm()
    adaptive_small = eta * w_small.norm() / g_small.norm()
    assert adaptive_big > lr and adaptive_small < lr
    assert torch.allclose(big.detach(), w_big - lr * g_big, atol=1e-5)  # capped: plain SGD step
    assert torch.allclose(small.detach(), w_small - adaptive_small * g_small, atol=1e-7)
    # without clipping the same tensor moves lr * eta * ratio: far less than lr
    unclipped = nn.Parameter(w_big.clone())
    unclipped.grad = g_big.clone()
    LARS([unclipped], lr=lr, momentum=0.0, trust_coefficient=eta).step()
    assert torch.allclose(unclipped.detach(), w_big - lr * adaptive_big * g_big, atol=1e-5)


def test_weight_decay_on_every_parameter_when_asked():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    groups = param_groups(m, 5e-4, exclude_bias_and_norm=False)
    assert len(groups) == 1 and len(groups[0]["params"]) == 4 and groups[0]["weight_decay"] == 5e-4


def test_backbone_and_predictor_learning_rate_scales(tmp_path):
    """optim.backbone_lr_scale and predictor_lr_scale reach the optimiser's groups; the
    projector keeps the base rate."""
    from byol.config import load_config
    from byol.training.module import BYOLModule

    cfg = load_config(None, ["--model.backbone_args", "{stem: cifar, width: 0.125}", "--data.image_size", "16",
                             "--model.projection_hidden_dim", "32", "--model.prediction_hidden_dim", "32",
                             "--optim.name", "sgd", "--optim.backbone_lr_scale", "0.1",
                             "--optim.predictor_lr_scale", "2", "--optim.base_lr", "0.256", "--optim.warmup_epochs", "0",
                             "--train.batch_size", "256"])
    module = BYOLModule(config=cfg)
    module.trainer = type("T", (), {"world_size": 1, "accumulate_grad_batches": 1, "max_epochs": 1,
                                    "estimated_stepping_batches": 10})()
    optimizer = module.configure_optimizers()["optimizer"]
    where = {**{id(p): "backbone" for p in module.model.backbone.parameters()},
             **{id(p): "projector" for p in module.model.online.projector.parameters()},
             **{id(p): "predictor" for p in module.model.predictor.parameters()}}
    rates = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            rates.setdefault(where[id(p)], set()).add(round(g["lr"], 6))
    assert rates == {"backbone": {0.0256}, "projector": {0.256}, "predictor": {0.512}}


def test_predictor_learning_rate_scale():
    m = BYOL(resnet18(stem="cifar", width=0.125), image_size=16, projection_hidden_dim=32, prediction_hidden_dim=32)
    opt = build_optimizer(m.trainable_modules(), "sgd", 0.1, 1e-4, lr_scales={m.predictor: 10.0})
    predictor = {id(p) for p in m.predictor.parameters()}
    for g in opt.param_groups:
        in_predictor = {id(p) in predictor for p in g["params"]}
        assert len(in_predictor) == 1  # a group is all predictor or all the rest
        assert g["lr"] == pytest.approx(1.0 if in_predictor.pop() else 0.1)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(m.online.parameters())) + len(
        list(m.predictor.parameters()))


def test_a_held_backbone_stays_still_while_the_heads_learn_then_follows_the_schedule():
    """optim.backbone_held_epochs: the backbone's rate is 0 for that share of the steps (its
    weights do not move while the heads do), then the same warm-up/cosine schedule as the rest;
    the default keeps the optimiser's groups as they were (a checkpoint's groups still match)."""
    from byol.config import load_config
    from byol.training.module import BYOLModule

    def module_with(*extra):
        cfg = load_config(None, ["--model.backbone_args", "{stem: cifar, width: 0.125}", "--data.image_size", "16",
                                 "--model.projection_hidden_dim", "32", "--model.prediction_hidden_dim", "32",
                                 "--optim.name", "sgd", "--optim.warmup_epochs", "0", *extra])
        module = BYOLModule(config=cfg)
        module.trainer = type("T", (), {"world_size": 1, "accumulate_grad_batches": 1, "max_epochs": 4,
                                        "estimated_stepping_batches": 8})()
        return module, module.configure_optimizers()

    plain, plain_opt = module_with()
    assert len(plain_opt["optimizer"].param_groups) == 2  # decayed weights, excluded biases and norms
    module, conf = module_with("--optim.backbone_held_epochs", "1")  # 4 epochs x 2 steps: held for 2 steps
    optimizer, scheduler = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    backbone = {id(p) for p in module.model.backbone.parameters()}
    torch.manual_seed(0)
    x1, x2 = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    moved = []
    for step in range(4):
        start = [p.detach().clone() for p in module.model.backbone.parameters()]
        head = module.model.predictor[0].weight.detach().clone()
        optimizer.zero_grad()
        module.model(x1, x2).backward()
        optimizer.step()
        scheduler.step()
        moved.append((any(not torch.equal(a, p) for a, p in zip(start, module.model.backbone.parameters())),
                      not torch.equal(head, module.model.predictor[0].weight)))
        rates = {all(id(p) in backbone for p in g["params"]): g["lr"] for g in optimizer.param_groups}
        if step < 1:
            assert rates[True] == 0.0 and rates[False] > 0
        else:
            assert rates[True] == pytest.approx(rates[False])
    assert moved == [(False, True), (False, True), (True, True), (True, True)]
