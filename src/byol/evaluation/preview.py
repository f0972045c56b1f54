"""`byol preview`: a PNG grid of original images and their two augmented views."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from byol.checkpoint import atomic_write
from byol.config import Config
from byol.core.augment import BatchAugment, to_float
from byol.data.image_sets import decode_to_memory
from byol.data.listing import list_images
from byol.data.splits import random_subset


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    c = x.shape[1]
    m = torch.tensor(mean[:c]).view(1, c, 1, 1)
    s = torch.tensor(std[:c]).view(1, c, 1, 1)
    return (x * s + m).clamp(0, 1)


def write_preview(data: str | None, output: str, cfg: Config, n: int = 8, seed: int = 0, scale: int = 0,
                  images: torch.Tensor | None = None) -> Path:
    """Rows: originals, view 1, view 2 (as the network sees them, before normalisation), with
    `cfg`'s augmentation: the plan's, for the views a run would train on (byol preview plans
    it as `byol pretrain` does). The originals are n images of the folder or tar `data`, or the
    first n of uint8 `images`. Returns the PNG's path."""
    torch.manual_seed(seed)
    if images is None:
        load = cfg.data.load_size or cfg.data.image_size
        images = decode_to_memory(random_subset(list_images(data), n, seed), load, cfg.data.channels).images
    images = images[:n]
    v1, v2 = BatchAugment(cfg.augment)(images)
    size = cfg.data.image_size
    orig = torch.nn.functional.interpolate(to_float(images), size=(size, size), mode="bilinear", antialias=True)
    rows = [orig, denormalize(v1, cfg.augment.mean, cfg.augment.std), denormalize(v2, cfg.augment.mean, cfg.augment.std)]
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # (C, 3*S, n*S)
    arr = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    img = Image.fromarray(arr)
    scale = scale or max(1, 96 // size)
    img = labeled(img.resize((img.width * scale, img.height * scale), Image.NEAREST), cfg)
    atomic_write(output, lambda f: img.save(f, format="PNG"))
    return Path(output)


def labeled(grid: Image.Image, cfg: Config) -> Image.Image:
    """The grid with each row's name at its left (original, view 1, view 2) and a line above
    that gives the side and what each view applies."""
    from PIL import ImageDraw

    def settings(view) -> str:
        return (f"crop {view.crop_scale[0]:g}-{view.crop_scale[1]:g}, flip {view.flip_p:g}, jitter {view.jitter_p:g}, "
                f"grey {view.grayscale_p:g}, blur {view.blur_p:g}, solarize {view.solarize_p:g}")

    a, margin, top = cfg.augment, 64, 30
    out = Image.new("RGB", (grid.width + margin, grid.height + top), "white")
    out.paste(grid.convert("RGB"), (margin, top))
    draw = ImageDraw.Draw(out)
    draw.text((4, 2), f"{cfg.data.image_size} px. view 1: {settings(a.view1)}", fill="black")
    draw.text((4, 15), f"view 2: {settings(a.view2)}", fill="black")
    row = grid.height // 3
    for i, name in enumerate(("original", "view 1", "view 2")):
        draw.text((4, top + i * row + row // 2 - 5), name, fill="black")
    return out
