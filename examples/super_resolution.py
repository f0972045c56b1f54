"""BYOL on an image-to-image network: a small super-resolution generator, by a named layer.

    python examples/super_resolution.py --data data/demo/train --steps 200

A generator's output is an image, not a representation; DLAS pretrains such networks by
taking the representation from a hidden layer instead. Here that layer is `body`, the
feature map before the upsampler: BYOL pools it, and the forward pass stops there, so the
upsampler and output convolution never run during pretraining. After pretraining the
generator is unchanged in shape and its weights load back into a fresh `SRGenerator`.
Without --data, the demo textures are generated first.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from byol import BYOL, AugmentConfig, BatchAugment
from byol.data.image_sets import decode_to_memory
from byol.data.listing import list_images
from byol.data.demo import generate_textures
from byol.core.optim import build_optimizer


class ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(ch, ch, 3, padding=1), nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + 0.2 * self.conv2(torch.relu(self.conv1(x)))


class SRGenerator(nn.Module):
    """EDSR-like x2 super-resolution: head conv, residual body, pixel-shuffle upsampler, tail."""

    def __init__(self, ch: int = 32, blocks: int = 4, scale: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, ch, 3, padding=1)
        self.body = nn.Sequential(*(ResidualBlock(ch) for _ in range(blocks)))
        self.upsample = nn.Sequential(nn.Conv2d(ch, ch * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        self.tail = nn.Conv2d(ch, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        return self.tail(self.upsample(h + self.body(h)))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="folder of images (default: generated demo textures)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--out", default="runs/example-sr/generator.pt")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    data = a.data or str(generate_textures(Path(tempfile.gettempdir()) / "byol-demo-textures", 30, 0) / "train")
    images = decode_to_memory(list_images(data), a.size).images

    gen = SRGenerator()
    upsampler_calls = []
    gen.upsample.register_forward_hook(lambda *_: upsampler_calls.append(1))
    model = BYOL(gen, hidden_layer="body", image_size=a.size, projection_hidden_dim=512,
                 prediction_hidden_dim=512, projection_dim=128)
    augment = BatchAugment(AugmentConfig(size=a.size))
    opt = build_optimizer(model.trainable_modules(), "adamw", lr=1e-3, weight_decay=1e-4)
    losses = []
    for step in range(a.steps):
        loss = model(*augment(images[torch.randint(0, len(images), (a.batch,))]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.update_target(step, a.steps)
        losses.append(loss.item())

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(gen.state_dict(), out)
    fresh = SRGenerator()
    fresh.load_state_dict(torch.load(out, weights_only=True))  # the user's own keys, strict
    x = torch.rand(1, 3, a.size, a.size)
    results = {"first_loss": round(losses[0], 4), "last_loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
               "upsampler_calls_during_byol": len(upsampler_calls),
               "output_shape": list(fresh(x).shape), "weights": str(out)}
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
