"""Built-in demo data, generated (no download): ten classes of shapes.

Each image is one shape on a background. The class is the shape; its colour, the
background colour and gradient, the position, scale and a small rotation are random
nuisances. Colour carries no information about the class, so a network that separates
the classes must have learnt shape, which is what BYOL's colour augmentations push for.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("circle", "ring", "square", "frame", "triangle", "cross", "star", "bars", "crescent", "diamond")


def _shape_mask(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r = np.hypot(u, v)
    if name == "circle":
        return r < 0.9
    if name == "ring":
        return (r < 0.95) & (r > 0.6)
    if name == "square":
        return np.maximum(abs(u), abs(v)) < 0.75
    if name == "frame":
        m = np.maximum(abs(u), abs(v))
        return (m < 0.85) & (m > 0.55)
    if name == "triangle":
        return (v < 0.6) & (v > -0.9 + 1.73 * abs(u) * 0.87)
    if name == "cross":
        return ((abs(u) < 0.25) & (abs(v) < 0.9)) | ((abs(v) < 0.25) & (abs(u) < 0.9))
    if name == "star":
        theta = np.arctan2(v, u)
        return r < 0.45 + 0.45 * np.cos(5 * theta) ** 2 * (np.cos(5 * theta) > 0)
    if name == "bars":
        return (abs(u) < 0.85) & ((abs(v - 0.45) < 0.2) | (abs(v + 0.45) < 0.2))
    if name == "crescent":
        return (r < 0.9) & (np.hypot(u - 0.45, v) > 0.7)
    if name == "diamond":
        return abs(u) / 0.6 + abs(v) < 0.95
    raise ValueError(name)


def render(label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One (size, size, 3) uint8 image of class `label`, drawn at 2x and box-downsampled."""
    s = 2 * size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s * 2 - 1  # [-1, 1]
    cx, cy = rng.uniform(-0.35, 0.35, 2)
    scale = rng.uniform(0.45, 0.85)
    angle = rng.uniform(-0.35, 0.35)
    ca, sa = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * ca + (yy - cy) * sa) / scale
    v = (-(xx - cx) * sa + (yy - cy) * ca) / scale
    mask = _shape_mask(CLASSES[label], u, v)[..., None]
    bg1, bg2 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    direction = rng.uniform(-1, 1, 2)
    t = ((xx * direction[0] + yy * direction[1]) / 2 + 0.5)[..., None]
    background = bg1 * (1 - t) + bg2 * t
    fg = rng.uniform(0, 1, 3)
    while np.abs(fg - background.mean(axis=(0, 1))).sum() < 0.6:  # keep the shape visible
        fg = rng.uniform(0, 1, 3)
    img = np.where(mask, fg, background) + rng.normal(0, 0.03, (s, s, 3))
    img = img.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def generate_shapes(out: str | Path, train_per_class: int = 300, test_per_class: int = 100,
                    size: int = 32, seed: int = 0) -> Path:
    """Write out/train/<class>/NNNN.png and out/test/<class>/NNNN.png; skip if already complete."""
    out = Path(out)
    marker = out / ".complete"
    stamp = f"{train_per_class} {test_per_class} {size} {seed}"
    if marker.exists() and marker.read_text() == stamp:
        return out
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASSES):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(render(label, rng, size)).save(folder / f"{i:04d}.png")
    marker.write_text(stamp)
    return out
