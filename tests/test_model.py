import threading

import pytest
import torch
from torch import nn

from byol import BYOL
from byol.core.backbones import resnet18
from byol.core.ema import cosine_tau, ema_update
from byol.core.loss import byol_loss, regression_loss
from byol.core.model import HiddenLayerError, layer_names


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 5)
        self.fc_calls = 0

    def forward(self, x):
        y = self.flatten(self.pool(self.features(x)))
        self.fc_calls += 1
        return self.fc(y)


def small_byol(**kw):
    return BYOL(Classifier(), hidden_layer=kw.pop("hidden_layer", "pool"), image_size=16,
                projection_hidden_dim=32, prediction_hidden_dim=32, projection_dim=16, **kw)


def test_hidden_layer_by_name_and_index():
    by_name = small_byol(hidden_layer="pool")
    by_index = small_byol(hidden_layer=-2)  # children: features, pool, flatten, fc -> flatten
    assert by_name.online.hidden_layer == "pool" and by_name.feature_dim == 8
    assert by_index.online.hidden_layer == "flatten" and by_index.feature_dim == 8
    nested = small_byol(hidden_layer="features.0")  # conv maps are pooled to (B, 8)
    assert nested.feature_dim == 8


def test_hook_stops_forward_at_the_layer():
    m = small_byol(hidden_layer="pool")
    net = m.backbone
    before = net.fc_calls
    m(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16))
    assert net.fc_calls == before  # fc after the hidden layer never ran


def test_unknown_hidden_layer_lists_layers():
    with pytest.raises(HiddenLayerError, match="not a layer of Classifier; layers are: features"):
        small_byol(hidden_layer="avgpool")
    with pytest.raises(HiddenLayerError, match="out of range"):
        small_byol(hidden_layer=7)
    assert "features.1" in layer_names(Classifier())


def test_loss_zero_for_identical_and_symmetric():
    q = torch.randn(6, 16)
    assert torch.allclose(regression_loss(q, 3 * q), torch.zeros(6), atol=1e-6)
    q1, q2, z1, z2 = (torch.randn(6, 16) for _ in range(4))
    assert torch.allclose(byol_loss(q1, q2, z1, z2), byol_loss(q2, q1, z2, z1))
    # the two directions are summed, not averaged: opposite vectors give 4 + 4
    assert torch.allclose(byol_loss(q1, q2, -q2, -q1), torch.tensor(8.0), atol=1e-5)


def test_target_is_a_separate_frozen_copy():
    m = small_byol()
    online = dict(m.online.named_parameters())
    for name, p in m.target.named_parameters():
        assert p.data_ptr() != online[name].data_ptr()
        assert not p.requires_grad and online[name].requires_grad
    loss = m(torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16))
    loss.backward()
    assert all(p.grad is None for p in m.target.parameters())
    assert all(p.grad is not None for p in m.predictor.parameters())


def test_ema_tau_one_keeps_and_tau_zero_copies_including_bn_buffers():
    m = small_byol()
    m(torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16))  # moves online BN stats
    with torch.no_grad():
        for p in m.online.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in m.target.state_dict().items()}
    ema_update(m.target, m.online, tau=1.0)
    for k, v in m.target.state_dict().items():
        assert torch.equal(v, before[k]), k
    ema_update(m.target, m.online, tau=0.0)
    online = m.online.state_dict()
    for k, v in m.target.state_dict().items():
        assert torch.allclose(v.float(), online[k].float()), k


def test_target_bn_statistics_move_only_by_ema():
    m = small_byol()
    stats = m.target.net.features[1].running_mean.clone()
    m(torch.randn(8, 3, 16, 16) + 3, torch.randn(8, 3, 16, 16) + 3)
    assert torch.equal(m.target.net.features[1].running_mean, stats)
    assert not torch.equal(m.online.net.features[1].running_mean, stats)


def test_cosine_tau_schedule_goes_up_per_step():
    assert cosine_tau(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_tau(50, 100, 0.996) == pytest.approx(0.998)
    assert cosine_tau(100, 100, 0.996) == pytest.approx(1.0)
    taus = [cosine_tau(k, 100) for k in range(101)]
    assert all(a <= b for a, b in zip(taus, taus[1:]))


def test_update_target_uses_schedule():
    m = small_byol(tau_base=0.9)
    assert m.update_target(0, 10) == pytest.approx(0.9)
    assert m.update_target(10, 10) == pytest.approx(1.0)


def test_embed_uses_online_backbone_in_eval_mode():
    m = small_byol()
    m.train()
    x = torch.randn(3, 3, 16, 16)
    e = m.embed(x)
    assert e.shape == (3, 8) and m.online.training
    m.eval()
    assert m.target.training  # the target always uses batch statistics


def test_concurrent_calls_keep_their_own_capture():
    """The capture hook lives per call (DataParallel runs replicas in threads)."""
    m = small_byol()
    m.eval()
    xs = [torch.randn(2, 3, 16, 16) for _ in range(4)]
    expected = [m.online.representation(x) for x in xs]
    results = [None] * 4

    def run(i):
        for _ in range(20):
            results[i] = m.online.representation(xs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r, e in zip(results, expected):
        assert torch.allclose(r, e)


def test_concat_views_matches_shapes_and_resnet_training_step_lowers_loss():
    torch.manual_seed(0)
    m = BYOL(resnet18(stem="cifar", width=0.125), image_size=16, projection_hidden_dim=64,
             prediction_hidden_dim=64, concat_views=True)
    opt = torch.optim.SGD(list(m.online.parameters()) + list(m.predictor.parameters()), lr=0.05, momentum=0.9)
    x1, x2 = torch.randn(16, 3, 16, 16), torch.randn(16, 3, 16, 16)
    losses = []
    for k in range(15):
        loss = m(x1, x2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        m.update_target(k, 15)
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_tau_final_sets_the_end_of_the_cosine_or_keeps_it_constant():
    assert cosine_tau(0, 100, 0.99) == pytest.approx(0.99) and cosine_tau(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_tau(50, 100, 0.99, 0.999) == pytest.approx((0.99 + 0.999) / 2)
    assert all(cosine_tau(k, 100, 0.99, 0.99) == pytest.approx(0.99) for k in (0, 37, 100))
