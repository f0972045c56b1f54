"""A U-Net whose ResNet-18 encoder is pretrained with BYOL, fine-tuned for segmentation.

    python examples/unet_segmentation.py            (about 5 minutes on 2 CPU cores)

The example makes its own data: grey images with a noisy textured background and one to
three shapes (disc, square, triangle), and a mask with the class of every pixel. BYOL
pretrains the encoder on unlabeled images with the plain-PyTorch API (one call per step);
then the same U-Net is fine-tuned on a few labeled images twice, from the BYOL encoder and
from a random one, and the mean IoU over the three shape classes on held-out images is
compared.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from byol import BYOL, AugmentConfig, BatchAugment
from byol.core.augment import normalize, to_float
from byol.core.backbones import ResNet, resnet18
from byol.core.optim import build_optimizer

SHAPES = ("background", "disc", "square", "triangle")


def make_shapes(n: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (n, 3, size, size), int64 masks (n, size, size)) of random shapes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    for i in range(n):
        period, phase = rng.uniform(3, 9), rng.uniform(0, 2 * np.pi)
        img = 0.5 + 0.15 * np.sin(xx / period + phase) * np.cos(yy / (period * 1.3)) + rng.normal(0, 0.05, xx.shape)
        for _ in range(rng.integers(1, 4)):
            kind, r = rng.integers(1, 4), rng.uniform(size / 10, size / 5)
            cx, cy = rng.uniform(r, size - r, 2)
            if kind == 1:
                inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
            elif kind == 2:
                inside = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
            else:  # upward triangle: below the two sloped edges, above the base
                inside = (yy <= cy + r) & (yy >= cy - r + 2 * np.abs(xx - cx))
            level = rng.uniform(0.0, 0.25) if rng.random() < 0.5 else rng.uniform(0.75, 1.0)  # visible
            img[inside] = level + rng.normal(0, 0.05, inside.sum())
            masks[i][inside] = kind
        images[i] = img
    images = (np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8)
    return torch.from_numpy(images)[:, None].repeat(1, 3, 1, 1), torch.from_numpy(masks)


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) on a ResNet encoder's stages (CIFAR stem: full resolution
    after the stem, then /2, /4, /8); each decoder step upsamples and concatenates a skip."""

    def __init__(self, encoder: ResNet, num_classes: int):
        super().__init__()
        self.encoder = encoder
        chans = [encoder.layer1[0].conv1.out_channels, *(getattr(encoder, f"layer{i}")[0].conv1.out_channels
                                                         for i in (2, 3, 4))]

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True))

        self.up = nn.ModuleList(block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(3)))
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x):
        e = self.encoder
        x = e.maxpool(e.relu(e.bn1(e.conv1(x))))
        skips = []
        for layer in (e.layer1, e.layer2, e.layer3, e.layer4):
            x = layer(x)
            skips.append(x)
        x = skips.pop()
        for up in self.up:
            skip = skips.pop()
            x = up(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        return self.head(x)


def pretrain_encoder(encoder: nn.Module, images: torch.Tensor, steps: int, batch: int, seed: int) -> list[float]:
    """BYOL on unlabeled images with the plain API; returns the loss every 50 steps."""
    torch.manual_seed(seed)
    size = images.shape[-1]
    model = BYOL(encoder, hidden_layer="avgpool", image_size=size, projection_hidden_dim=512,
                 prediction_hidden_dim=512, projection_dim=128)
    augment = BatchAugment(AugmentConfig(size=size))
    opt = build_optimizer(model.trainable_modules(), "adamw", lr=2e-3, weight_decay=1e-4)
    losses = []
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,))
        loss = model(*augment(images[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_target(step, steps)
        if step % 50 == 0 or step == steps - 1:
            losses.append(round(loss.item(), 4))
    return losses


def mean_iou(pred: torch.Tensor, target: torch.Tensor, classes=range(1, len(SHAPES))) -> float:
    ious = []
    for c in classes:
        inter = ((pred == c) & (target == c)).sum().item()
        union = ((pred == c) | (target == c)).sum().item()
        if union:
            ious.append(inter / union)
    return float(np.mean(ious))


def finetune(unet: UNet, images, masks, test_images, test_masks, steps: int, batch: int, seed: int) -> float:
    """Supervised segmentation training (flips as augmentation); mean IoU on the test images."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-3, weight_decay=1e-4)
    mean, std = AugmentConfig().mean, AugmentConfig().std
    for _ in range(steps):
        idx = torch.randint(0, len(images), (min(batch, len(images)),))
        x, y = normalize(to_float(images[idx]), mean, std), masks[idx]
        if torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = F.cross_entropy(unet(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    unet.eval()
    with torch.no_grad():
        pred = torch.cat([unet(normalize(to_float(test_images[i:i + 64]), mean, std)).argmax(1)
                          for i in range(0, len(test_images), 64)])
    return mean_iou(pred, test_masks)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--unlabeled", type=int, default=2000, help="images for BYOL pretraining")
    p.add_argument("--labeled", type=int, default=40, help="images with masks for fine-tuning")
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--pretrain-steps", type=int, default=400)
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    unlabeled, _ = make_shapes(a.unlabeled, a.size, seed=a.seed + 1)
    images, masks = make_shapes(a.labeled, a.size, seed=a.seed + 2)
    test_images, test_masks = make_shapes(a.test, a.size, seed=a.seed + 3)

    torch.manual_seed(a.seed)
    encoder = resnet18(stem="cifar", width=a.width)
    random_encoder = resnet18(stem="cifar", width=a.width)
    random_encoder.load_state_dict(encoder.state_dict())  # same initialisation as BYOL starts from
    losses = pretrain_encoder(encoder, unlabeled, a.pretrain_steps, a.batch, a.seed)
    results = {"byol_loss": losses}
    for name, enc in (("byol", encoder), ("random_init", random_encoder)):
        results[f"miou_{name}"] = round(finetune(UNet(enc, len(SHAPES)), images, masks, test_images, test_masks,
                                                 a.finetune_steps, a.batch, a.seed), 4)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
