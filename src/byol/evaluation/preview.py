"""`byol preview`: a PNG grid of original images and their two augmented views (full-precision
data in false colour)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from byol.checkpoint import atomic_write
from byol.config import Config, ConfigError, input_channels, to_dict
from byol.core.augment import BatchAugment, normalize, to_float
from byol.data.bands import Pixels
from byol.data.image_sets import decode_to_memory
from byol.data.listing import list_images
from byol.data.splits import random_subset


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    c = x.shape[1]
    m = torch.tensor(mean[:c]).view(1, c, 1, 1)
    s = torch.tensor(std[:c]).view(1, c, 1, 1)
    return (x * s + m).clamp(0, 1)


STRETCH = 2.5  # false colour: a band's mean +- this many standard deviations spans black to white


def false_colour(x: torch.Tensor, shown: tuple[int, ...], standardised: bool, mean=None, std=None) -> torch.Tensor:
    """Three bands of full-precision images (or one, for fewer than three) as [0, 1] colour:
    each band's mean +- STRETCH standard deviations spans the range; `x` standardised already
    (the views) or in the data's units (the originals, standardised here with mean and std)."""
    if not standardised:
        x = normalize(x, mean, std)
    x = x[:, list(shown)]
    return (x / (2 * STRETCH) + 0.5).clamp(0, 1)


def write_preview(data: str | None, output: str, cfg: Config, n: int = 8, seed: int = 0, scale: int = 0,
                  images: torch.Tensor | None = None, bands: tuple[int, ...] | None = None) -> Path:
    """Rows: originals, view 1, view 2 (as the network sees them, before normalisation), with
    `cfg`'s augmentation: the plan's, for the views a run would train on (byol preview plans
    it as `byol pretrain` does). The originals are n images of the folder or tar `data`, or the
    first n of `images`. Full-precision data is shown in false colour: the three `bands` named
    (0-based, as R, G and B; default the first three; one band as grey). Returns the PNG's path."""
    torch.manual_seed(seed)
    pixels = Pixels.of(to_dict(cfg)["data"])
    if images is None:
        load = cfg.data.load_size or cfg.data.image_size
        images = decode_to_memory(random_subset(list_images(data), n, seed), load, input_channels(cfg.data),
                                  pixels=pixels).images
    images = images[:n]
    v1, v2 = BatchAugment(cfg.augment, pixels=pixels.kind)(images)
    size = cfg.data.image_size
    orig = torch.nn.functional.interpolate(to_float(images), size=(size, size), mode="bilinear", antialias=True)
    if pixels.full:
        c = images.shape[1]
        shown = bands or ((0, 1, 2) if c >= 3 else (0,))
        if len(shown) not in (1, 3) or max(shown) >= c:
            raise ConfigError(f"--bands {','.join(map(str, shown))}: name three of the {c} bands (0 to {c - 1}) to show "
                              "as red, green and blue, or one to show in grey")
        a = cfg.augment
        rows = [false_colour(orig, shown, False, a.mean, a.std), false_colour(v1, shown, True),
                false_colour(v2, shown, True)]
    else:
        rows = [orig, denormalize(v1, cfg.augment.mean, cfg.augment.std),
                denormalize(v2, cfg.augment.mean, cfg.augment.std)]
    grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # (C, 3*S, n*S)
    arr = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    img = Image.fromarray(arr)
    scale = scale or max(1, 96 // size)
    img = labeled(img.resize((img.width * scale, img.height * scale), Image.NEAREST), cfg,
                  f"false colour: bands {', '.join(map(str, shown))} (mean +-{STRETCH:g} std)" if pixels.full else "")
    atomic_write(output, lambda f: img.save(f, format="PNG"))
    return Path(output)


def labeled(grid: Image.Image, cfg: Config, shown: str = "") -> Image.Image:
    """The grid with each row's name at its left (original, view 1, view 2) and lines above
    that give the side, what each view applies and, for full-precision data, the bands shown."""
    from PIL import ImageDraw

    full = cfg.data.pixels == "full"

    def settings(view) -> str:
        colour = (f"rot90 {view.rot90_p:g}, band drop {view.band_drop_p:g}" if full else
                  f"grey {view.grayscale_p:g}, solarize {view.solarize_p:g}")
        return (f"crop {view.crop_scale[0]:g}-{view.crop_scale[1]:g}, flip {view.flip_p:g}, jitter {view.jitter_p:g}, "
                f"blur {view.blur_p:g}, {colour}")

    a, margin, top = cfg.augment, 64, 43 if shown else 30
    out = Image.new("RGB", (grid.width + margin, grid.height + top), "white")
    out.paste(grid.convert("RGB"), (margin, top))
    draw = ImageDraw.Draw(out)
    draw.text((4, 2), f"{cfg.data.image_size} px. view 1: {settings(a.view1)}", fill="black")
    draw.text((4, 15), f"view 2: {settings(a.view2)}", fill="black")
    if shown:
        draw.text((4, 28), shown, fill="black")
    row = grid.height // 3
    for i, name in enumerate(("original", "view 1", "view 2")):
        draw.text((4, top + i * row + row // 2 - 5), name, fill="black")
    return out
