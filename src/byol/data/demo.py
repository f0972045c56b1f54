"""Built-in demo data, generated (no download): ten classes of textures.

The class is the pattern (stripes of an orientation, checkers, dots, rings, waves, ...).
Its two grey levels (brightness and contrast), its period, phase, a small rotation and
pixel noise are random nuisances. A texture is present in every random crop of its image,
so the two views of an image share its class, and an untrained network's features, led by
brightness and contrast, separate the classes poorly.

Why grey: with a random colour pair per image, the pair is an identity that colour jitter
keeps (a hue rotation keeps hue differences), and BYOL learns it first: measured here,
400 steps moved kNN from 20.9 % to 22.9 % with colour pairs, from 39.4 % to 55.6 % in grey
(SGD, resnet18-cifar at width 0.25, batch 128).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("horizontal_stripes", "vertical_stripes", "diagonal_stripes", "checkers", "diamond_checkers",
           "dots", "rings", "grid", "waves", "blobs")


def _pattern(name: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mask in {0, 1} on coordinates measured in periods."""
    if name == "horizontal_stripes":
        return np.sin(2 * np.pi * v) > 0
    if name == "vertical_stripes":
        return np.sin(2 * np.pi * u) > 0
    if name == "diagonal_stripes":
        sign = rng.choice([-1.0, 1.0])  # both directions: a mirror image stays in the class
        return np.sin(2 * np.pi * (u + sign * v) / np.sqrt(2)) > 0
    if name == "checkers":
        return (np.sin(2 * np.pi * u) > 0) ^ (np.sin(2 * np.pi * v) > 0)
    if name == "diamond_checkers":
        return (np.sin(np.pi * (u + v)) > 0) ^ (np.sin(np.pi * (u - v)) > 0)
    if name == "dots":
        return np.hypot(u - np.round(u), v - np.round(v)) < 0.28
    if name == "rings":
        cu, cv = rng.uniform(u.min(), u.max()), rng.uniform(v.min(), v.max())
        return np.sin(2 * np.pi * np.hypot(u - cu, v - cv)) > 0
    if name == "grid":
        return (np.abs(u - np.round(u)) < 0.12) | (np.abs(v - np.round(v)) < 0.12)
    if name == "waves":
        return np.sin(2 * np.pi * (v + 0.25 * np.sin(2 * np.pi * u / 2.0))) > 0
    if name == "blobs":
        field = np.zeros_like(u)
        for _ in range(6):
            f = rng.uniform(0.3, 0.7, 2)
            field += np.sin(2 * np.pi * (f[0] * u + rng.uniform())) * np.sin(2 * np.pi * (f[1] * v + rng.uniform()))
        return field > 0
    raise ValueError(name)


def render(label: int, rng: np.random.Generator, size: int = 32, levels: tuple[float, float] | None = None) -> np.ndarray:
    """One (size, size, 3) uint8 image of class `label`, drawn at 2x and box-downsampled; its two
    grey levels drawn at random, or `levels`."""
    s = 2 * size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64) / 2  # pixels of the final image
    period = rng.uniform(4.0, 8.0)
    angle = rng.uniform(-0.2, 0.2)
    ca, sa = np.cos(angle), np.sin(angle)
    u = (xx * ca + yy * sa) / period + rng.uniform()
    v = (-xx * sa + yy * ca) / period + rng.uniform()
    mask = _pattern(CLASSES[label], u, v, rng)[..., None]
    l1, l2 = levels or grey_levels(rng)
    img = np.where(mask, l1, l2) + rng.normal(0, 0.03, (s, s, 1))
    img = np.repeat(img, 3, axis=2)  # stored as RGB, as a user's photos would be
    img = img.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def grey_levels(rng: np.random.Generator) -> tuple[float, float]:
    """A texture's two grey levels in [0, 1], at least 0.3 apart (the pattern stays visible)."""
    l1, l2 = rng.uniform(0, 1, 2)
    while abs(l1 - l2) < 0.3:
        l2 = rng.uniform(0, 1)
    return l1, l2


def generate_textures(out: str | Path, train_per_class: int = 300, test_per_class: int = 100,
                    size: int = 32, seed: int = 0) -> Path:
    """Write out/train/<class>/NNNN.png and out/test/<class>/NNNN.png; skip if already complete."""
    def save(label: int, rng: np.random.Generator, path: Path) -> None:
        Image.fromarray(render(label, rng, size)).save(path.with_suffix(".png"))

    return write_classes(out, f"grey-textures {train_per_class} {test_per_class} {size} {seed}", save,
                         train_per_class, test_per_class, seed)


def write_classes(out: str | Path, stamp: str, save, train_per_class: int, test_per_class: int, seed: int,
                  classes: tuple[str, ...] = CLASSES) -> Path:
    """out/train/<class>/NNNN and out/test/<class>/NNNN, each written by save(label, rng, path
    without suffix) from one generator seeded by `seed`; skipped where out's marker holds `stamp`."""
    out = Path(out)
    marker = out / ".complete"
    if marker.exists() and marker.read_text() == stamp:
        return out
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(classes):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                save(label, rng, folder / f"{i:04d}")
    marker.write_text(stamp)
    return out


# Multi-band demo (byol demo --bands N): full-precision images whose classes differ only in the
# bands after the first three. Bands 0-2 (the "visible" ones) show the texture of a random class,
# drawn independently of the image's own class, so an RGB-only network has nothing to learn the
# class from; bands 3 and up show the image's own class's texture. Both textures take the same
# two grey levels, as one surface is bright or dark in every band: levels drawn for each texture
# would give every image a band-to-band brightness pattern that no global brightness or contrast
# change alters, an identity BYOL learns before any texture (as colour pairs, see the top). Each
# texture is turned by a random multiple of 90 degrees, as overhead imagery has no up (the plan's
# rotations, decide_augmentation): horizontal and vertical stripes are one class, "stripes".
# Values are 16-bit like a satellite's reflectances (0-10,000), each band with its own offset and
# gain, so the per-band standardisation matters.
BAND_CLASSES = {"stripes": "horizontal_stripes",  # class -> pattern
                **{c: c for c in CLASSES if c not in ("horizontal_stripes", "vertical_stripes")}}
BAND_OFFSETS = (900.0, 1200.0, 1500.0, 2600.0, 3100.0, 2000.0, 1400.0, 1800.0)
BAND_GAINS = (400.0, 500.0, 600.0, 1500.0, 1200.0, 900.0, 700.0, 1000.0)


BAND_PATTERNS = [CLASSES.index(p) for p in BAND_CLASSES.values()]  # each band class's texture


def render_bands(label: int, rng: np.random.Generator, bands: int = 8, size: int = 32) -> np.ndarray:
    """One (bands, size, size) uint16 image of BAND_CLASSES' class `label` (see above)."""
    other = BAND_PATTERNS[int(rng.integers(len(BAND_PATTERNS)))]  # the visible bands' texture: any class's
    levels = grey_levels(rng)
    visible, hidden = (np.rot90(render(p, rng, size, levels)[..., 0], int(rng.integers(4))).astype(np.float64) / 255
                       for p in (other, BAND_PATTERNS[label]))
    return in_bands([visible if b < 3 else hidden for b in range(bands)], rng)


def in_bands(textures: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Band b shows textures[b] (values in [0, 1]) at its offset and gain (BAND_OFFSETS,
    BAND_GAINS, cycled past 8 bands) with noise of 2 % of the gain: uint16 (bands, H, W)."""
    out = []
    for b, texture in enumerate(textures):
        offset, gain = BAND_OFFSETS[b % len(BAND_OFFSETS)], BAND_GAINS[b % len(BAND_GAINS)]
        out.append(offset + gain * texture + rng.normal(0, 0.02 * gain, texture.shape))
    return np.clip(np.round(np.stack(out)), 0, 10_000).astype(np.uint16)


def generate_bands(out: str | Path, bands: int = 8, train_per_class: int = 300, test_per_class: int = 100,
                   size: int = 32, seed: int = 0) -> Path:
    """Write out/train/<class>/NNNN.npy and out/test/<class>/NNNN.npy, (bands, size, size) uint16
    arrays; skip if already complete."""
    if bands < 4:
        raise ValueError(f"--bands {bands}: the classes live in the bands after the first three; give at least 4")

    def save(label: int, rng: np.random.Generator, path: Path) -> None:
        np.save(path.with_suffix(".npy"), render_bands(label, rng, bands, size))

    return write_classes(out, f"band-textures {bands} {train_per_class} {test_per_class} {size} {seed}", save,
                         train_per_class, test_per_class, seed, tuple(BAND_CLASSES))

