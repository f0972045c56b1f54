"""The paper's image augmentations, every parameter in one place.

BYOL (Grill et al. 2020, arXiv 2006.07733), Appendix B, Table 6: two *asymmetric* views.

    parameter                      view 1   view 2
    random crop probability         1.0      1.0
    flip probability                0.5      0.5
    colour jitter probability       0.8      0.8
    brightness adjustment max       0.4      0.4
    contrast adjustment max         0.4      0.4
    saturation adjustment max       0.2      0.2
    hue adjustment max              0.1      0.1
    colour dropping probability     0.2      0.2
    Gaussian blurring probability   1.0      0.1
    solarization probability        0.0      0.2

Random resized crop: area scale 0.08-1, aspect ratio 3/4-4/3, bicubic resize (as in the
official code). Blur: sigma uniform in [0.1, 2.0], kernel about 10 % of the image side.
Solarize: x -> 1 - x where x >= 0.5 on [0, 1] images. Colour jitter applies its four
adjustments in a random order, clipping to [0, 1] after each (official code).
Brightness is *additive* (x + delta, delta ~ U[-0.4, 0.4]) as in the paper's TensorFlow
code; `brightness_mode: scale` gives torchvision's multiplicative factor x * (1 + delta).
Contrast scales around each channel's mean (TF); `contrast_mode: gray` scales around the
mean of the luma image (torchvision), as the libraries built on torchvision do.

Every random parameter is drawn per image, never one draw for the whole batch (one draw would give every image the same crop and colours).

There is one implementation and two placements:
- `BatchAugment`: a uint8 batch (B, C, H, W) on any device -> two float views; the fast path.
- `TwoViewTransform`: one image (PIL or uint8 tensor) -> two float views, for Dataset
  workers on the CPU (as DL-Art-School does); it runs the same code on a batch of one.
Data in its own units (16-bit, float, DICOM, any number of bands; `pixels="full"`) takes
`band_view` instead: standardised per band first, then only the operations that keep their
meaning for any band (see the section above `band_view`).
Images of different sizes (ImageNet) cannot share a batch before they are cropped: there each
view's random resized crop is taken from the full decoded image by `crop_from_full` in the
data workers, as DeepMind's input pipeline does, and the rest (flip, colour, blur, solarize)
runs batched with `cropped=True`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb, rgb_to_hsv
from kornia.filters import gaussian_blur2d

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL and torchvision


@dataclass(frozen=True)
class ViewConfig:
    """Parameters of one view. Defaults are the paper's view 1 (Table 6). Each field's
    docstring is its help text (`byol pretrain --help`)."""

    crop_scale: tuple[float, float] = (0.08, 1.0)
    """random resized crop: area fraction range"""
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """random resized crop: aspect ratio range"""
    flip_p: float = 0.5
    """horizontal flip probability"""
    jitter_p: float = 0.8
    """colour jitter probability"""
    brightness: float = 0.4
    """brightness change +-: added (TF's adjust_brightness) or a factor 1 +-"""
    brightness_mode: Literal["add", "scale"] = "add"
    """add: x + delta (the paper's TF code) | scale: x * (1 + delta) (torchvision's)"""
    contrast: float = 0.4
    """contrast factor 1 +-"""
    contrast_mode: Literal["channel", "gray"] = "channel"
    """channel: around each channel's mean (TF's) | gray: around the luma mean (torchvision's)"""
    saturation: float = 0.2
    """saturation factor 1 +- (blend with luma; the reference scales S in HSV)"""
    hue: float = 0.1
    """hue shift +-, in turns"""
    grayscale_p: float = 0.2
    """colour dropping probability"""
    blur_p: float = 1.0
    """Gaussian blur probability"""
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    """blur sigma range, pixels"""
    blur_kernel_frac: float = 0.1
    """blur kernel about this fraction of the side (reflect padding; the reference pads zeros)"""
    solarize_p: float = 0.0
    """solarization probability"""
    solarize_threshold: float = 0.5
    """pixels >= this (on [0, 1]) are inverted"""
    rot90_p: float = 0.0
    """rotation by 90, 180 or 270 degrees (one of them at random) with this probability; 0.75 makes every orientation equally likely (overhead imagery has no up)"""
    band_drop_p: float = 0.0
    """full-precision bands: each band set to its mean (0 once standardised) with this probability, at least one kept"""

    def __post_init__(self):
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p", "rot90_p", "band_drop_p"):
            require(0.0 <= getattr(self, name) <= 1.0, name, getattr(self, name), "is a probability, must be in [0, 1]")
        require(0 < self.crop_scale[0] <= self.crop_scale[1] <= 1, "crop_scale", self.crop_scale,
              "must be 0 < low <= high <= 1")
        require(0 < self.crop_ratio[0] <= self.crop_ratio[1], "crop_ratio", self.crop_ratio, "must be 0 < low <= high")
        require(0 < self.blur_sigma[0] <= self.blur_sigma[1], "blur_sigma", self.blur_sigma, "must be 0 < low <= high")


def require(ok: bool, name: str, value, what: str) -> None:
    """A ValueError that starts 'name = value: ' (the config names the section in front)."""
    if not ok:
        raise ValueError(f"{name} = {value!r}: {what}")


def paper_view1() -> ViewConfig:
    return ViewConfig(blur_p=1.0, solarize_p=0.0)


def paper_view2() -> ViewConfig:
    return ViewConfig(blur_p=0.1, solarize_p=0.2)


def small_view() -> ViewConfig:
    """The small crops of multi-crop: DINO's local crops (Caron et al. 2021, arXiv 2104.14294,
    Section 3 and its code): area 0.05-0.4, blur probability 0.5, no solarization."""
    return ViewConfig(crop_scale=(0.05, 0.4), blur_p=0.5, solarize_p=0.0)


@dataclass(frozen=True)
class AugmentConfig:
    """Both views plus output size and normalisation."""

    size: int = 224
    """output side (set from data.image_size)"""
    view1: ViewConfig = field(default_factory=paper_view1)
    """the first view (the paper's view 1)"""
    view2: ViewConfig = field(default_factory=paper_view2)
    """the second view (the paper's view 2: blur 0.1, solarize 0.2)"""
    mean: tuple[float, ...] = IMAGENET_MEAN
    """per-channel normalisation mean"""
    std: tuple[float, ...] = IMAGENET_STD
    """per-channel normalisation std"""
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bicubic"
    """crop resize (PyTorch's bicubic a = -0.75; TF's is -0.5)"""
    crop_sampling: Literal["rejection", "clamp"] = "rejection"
    """rejection (torchvision) | clamp (DeepMind's), see crop_boxes"""
    small_crops: int = 0
    """multi-crop: this many extra small views per image (SwAV, DINO); each is regressed onto the target's projections of both full views, added to the loss (k crops: about (2 + 2k)/2 the loss and gradient, as a larger lr)"""
    small_size: int = 0
    """side of the small crops; 0: half of size"""
    small: ViewConfig = field(default_factory=small_view)
    """the small crops (DINO's local crops: area 0.05-0.4, blur 0.5, no solarization)"""

    def __post_init__(self):
        require(len(self.mean) == len(self.std), "mean/std", (self.mean, self.std), "need one value per channel")
        require(self.small_crops >= 0, "small_crops", self.small_crops, "must be >= 0")
        require(self.small_size == 0 or self.small_size >= 8, "small_size", self.small_size,
              "must be 0 (half of size) or at least 8")

    @property
    def small_side(self) -> int:
        """The side of the small crops: small_size, or half of size (at least 8 px)."""
        return self.small_size or max(8, self.size // 2)


def scheduled_size(schedule: dict[float, int], fraction: float, full: int) -> int:
    """The view side at `fraction` (0 to 1) of the run under a resolution schedule
    {start fraction: side}: the side of the latest start at or before `fraction`; `full`
    before the first start and with no schedule. Progressive resizing as in FFCV's ImageNet
    recipes (low resolution first, the full one at the end)."""
    started = [start for start in schedule if start <= fraction]
    return schedule[max(started)] if started else full


# ---------------------------------------------------------------------------
# Per-image parameter draws and the operations, on float batches in [0, 1].


def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


def _bernoulli(n: int, p: float, device) -> torch.Tensor:
    return torch.rand(n, device=device) < p


def crop_boxes(n: int, height: int, width: int, scale, ratio, device, trials: int = 10,
               sampling: str = "rejection"):
    """Random-resized-crop boxes (x0, y0, w, h) in pixels of the (height, width) images.

    Area fraction s ~ U(scale), aspect ratio r log-uniform in `ratio`, both of the original
    image. sampling:
    - "rejection" (torchvision's RandomResizedCrop, vectorised): up to `trials` draws, the
      first that fits wins; if none fits, a crop of the whole image with the ratio clamped to the
      range, centred (as torchvision centres its fallback). Mean area 0.478 of the image for
      scale (0.08, 1).
    - "clamp" (DeepMind's byol/utils/dataset.py `_decode_and_random_crop`): one draw, width
      and height clamped to the image. Mean area 0.534 for scale (0.08, 1).
    """
    if sampling not in ("rejection", "clamp"):
        raise ValueError(f"crop sampling must be 'rejection' or 'clamp', got {sampling!r}")
    a = torch.full((n, 1), width / height, device=device)
    draws = 1 if sampling == "clamp" else trials
    s = torch.rand(n, draws, device=device) * (scale[1] - scale[0]) + scale[0]
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    r = torch.exp(torch.rand(n, draws, device=device) * (hi - lo) + lo)
    wn, hn = torch.sqrt(s * r / a), torch.sqrt(s * a / r)  # fractions of the image's width, height
    if sampling == "clamp":
        wn, hn = wn.clamp(max=1.0).squeeze(1), hn.clamp(max=1.0).squeeze(1)
    else:
        fits = (wn <= 1) & (hn <= 1)
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
        wn, hn = wn.gather(1, first).squeeze(1), hn.gather(1, first).squeeze(1)
        a = a.squeeze(1)
        fw = torch.where(a > ratio[1], ratio[1] / a, torch.ones_like(a))  # centre crop, ratio clamped
        fh = torch.where(a < ratio[0], a / ratio[0], torch.ones_like(a))
        any_fit = fits.any(dim=1)
        wn, hn = torch.where(any_fit, wn, fw), torch.where(any_fit, hn, fh)
    x0 = torch.rand(n, device=device) * (1 - wn) * width
    y0 = torch.rand(n, device=device) * (1 - hn) * height
    if sampling == "rejection":  # torchvision's fallback is centred
        x0 = torch.where(any_fit, x0, (1 - wn) / 2 * width)
        y0 = torch.where(any_fit, y0, (1 - hn) / 2 * height)
    return x0, y0, wn * width, hn * height


def crop_box(height: int, width: int, scale, ratio, sampling: str = "rejection", trials: int = 10
             ) -> tuple[float, float, float, float]:
    """One box (x0, y0, w, h) by crop_boxes' rule, its numbers from one call to torch's
    generator and the rest plain arithmetic: the data workers' draw for one image (crop_boxes
    for one image costs some twenty tensor operations, a tenth of a decode)."""
    if sampling not in ("rejection", "clamp"):
        raise ValueError(f"crop sampling must be 'rejection' or 'clamp', got {sampling!r}")
    draws = 1 if sampling == "clamp" else trials
    u = torch.rand(2 * draws + 2).tolist()
    a, lo, hi = width / height, math.log(ratio[0]), math.log(ratio[1])
    fit = False
    for k in range(draws):
        s = u[2 * k] * (scale[1] - scale[0]) + scale[0]
        r = math.exp(u[2 * k + 1] * (hi - lo) + lo)
        wn, hn = math.sqrt(s * r / a), math.sqrt(s * a / r)
        if sampling == "clamp":
            wn, hn, fit = min(wn, 1.0), min(hn, 1.0), True
        fit = fit or (wn <= 1 and hn <= 1)
        if fit:
            break
    if not fit:  # torchvision's fallback: the whole image with the ratio clamped to the range, centred
        wn, hn = (ratio[1] / a if a > ratio[1] else 1.0), (a / ratio[0] if a < ratio[0] else 1.0)
        return (1 - wn) / 2 * width, (1 - hn) / 2 * height, wn * width, hn * height
    return u[-2] * (1 - wn) * width, u[-1] * (1 - hn) * height, wn * width, hn * height


def resized_crop(x: torch.Tensor, boxes, size: int, flip: torch.Tensor, mode: str = "bicubic", clamp: bool = True):
    """Crop each image to its box, resize to size x size, mirror where `flip`; one grid_sample.
    clamp: to [0, 1], the range of 8-bit pixels (bicubic overshoots); values in the data's own
    units are left as they come."""
    n, _, height, width = x.shape
    x0, y0, w, h = boxes
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    sign = 1.0 - 2.0 * flip.to(x.dtype)
    theta[:, 0, 0] = w / width * sign
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0) if clamp else out


# Pillow's resampling filters (libImaging/Resample.c): the bicubic kernel with a = -0.5, the
# triangle of bilinear; each with its support in pixels of the output's scale.
def _bicubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    x = x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1 - x.abs()).clamp_(min=0)


RESAMPLING = {"bicubic": (_bicubic, 2.0), "bilinear": (_triangle, 1.0)}


def resampling_weights(start: torch.Tensor, length: torch.Tensor, extent: torch.Tensor, out: int, canvas: int,
                       kernel: str = "bicubic", antialias: bool = True) -> torch.Tensor:
    """(B, out, canvas) weights that resize the span [start, start + length) of each image's
    row (or column) to `out` samples, as Pillow's resize(box=...) does (ImagingResample's
    precompute_coeffs): sample i is centred at start + (i + 0.5) * scale, scale = length / out,
    and where the span shrinks (scale > 1) the kernel is widened by the scale (antialiasing),
    its weights normalised to 1. Pixels at or past `extent` (the image's own size inside a
    padded canvas) are never read. antialias=False keeps the kernel's width: a plain sample,
    which aliases a span shrunk more than twofold."""
    fn, support = RESAMPLING[kernel]
    scale = (length / out).to(torch.float32)
    filterscale = scale.clamp(min=1.0) if antialias else torch.ones_like(scale)
    centre = start[:, None].float() + (torch.arange(out, device=start.device, dtype=torch.float32) + 0.5) * scale[:, None]
    pixel = torch.arange(canvas, device=start.device, dtype=torch.float32)  # each pixel's left edge
    reach = support * filterscale[:, None]
    first, last = torch.floor(centre - reach + 0.5).clamp(min=0), torch.floor(centre + reach + 0.5)  # Pillow's window
    weights = fn((pixel[None, None, :] + 0.5 - centre[:, :, None]) / filterscale[:, None, None])
    inside = ((pixel[None, None, :] >= first[:, :, None]) & (pixel[None, None, :] < last[:, :, None])
              & (pixel[None, None, :] < extent[:, None, None].float()))
    weights = weights * inside
    return weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-12)


def crop_resize(images: torch.Tensor, extents: torch.Tensor, boxes: torch.Tensor, size: int,
                kernel: str = "bicubic", antialias: bool = True, chunk: int = 64) -> torch.Tensor:
    """Each image's box cut and resized to size x size, for a whole batch on its device: uint8
    images (B, C, H, W) on a padded canvas, each image's own (height, width) in `extents`
    (B, 2), its box (x0, y0, w, h) in its pixels in `boxes` (B, 4). Two batched matrix products
    with Pillow's resampling weights (resampling_weights: antialiased where a box shrinks), so
    the crops are those of Pillow's resize(box=...) on each image, up to Pillow's 8-bit rounding
    between its two passes. Returns float32 in [0, 1]; `chunk` images at a time bound the
    memory."""
    out = []
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].float().div_(255.0)
        b, e = boxes[i:i + chunk].float(), extents[i:i + chunk]
        rows = resampling_weights(b[:, 1], b[:, 3], e[:, 0], size, x.shape[-2], kernel, antialias)  # (B, S, H)
        cols = resampling_weights(b[:, 0], b[:, 2], e[:, 1], size, x.shape[-1], kernel, antialias)  # (B, S, W)
        out.append((rows[:, None] @ x @ cols[:, None].transpose(-1, -2)).clamp_(0.0, 1.0))
    return torch.cat(out)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def adjust_brightness(x, delta):
    """Additive, as the paper's TF code (tf.image.adjust_brightness)."""
    return (x + _per_image(delta)).clamp_(0.0, 1.0)


def scale_brightness(x, delta):
    """Multiplicative, x * (1 + delta), as torchvision's ColorJitter (lightly's and solo-learn's)."""
    return (x * (1.0 + _per_image(delta))).clamp_(0.0, 1.0)


def adjust_contrast(x, factor):
    """(x - mean) * factor + mean with the per-channel image mean (tf.image.adjust_contrast)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * _per_image(factor) + mean).clamp_(0.0, 1.0)


def gray_contrast(x, factor):
    """(x - m) * factor + m with m the mean of the luma image, one value per image (torchvision's)."""
    mean = (grayscale(x) if x.shape[1] == 3 else x).mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * _per_image(factor) + mean).clamp_(0.0, 1.0)


def adjust_saturation(x, factor):
    gray = grayscale(x)
    return ((x - gray) * _per_image(factor) + gray).clamp_(0.0, 1.0)


def adjust_hue(x, delta):
    """Rotate hue by delta (a fraction of the full turn, in [-0.5, 0.5])."""
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, :1] + _per_image(delta) * (2 * math.pi), 2 * math.pi)
    return hsv_to_rgb(torch.cat([h, hsv[:, 1:]], dim=1)).clamp_(0.0, 1.0)


def color_jitter(x: torch.Tensor, cfg: ViewConfig, subsets: bool | None = None) -> torch.Tensor:
    """The four adjustments in a random order per image, applied with probability jitter_p.

    Each adjustment's value is identity +- strength: brightness 0 +- 0.4, contrast
    1 +- 0.4, saturation 1 +- 0.2, hue 0 +- 0.1. Each image draws its own values and its
    own order. Two ways to apply them, with the same draws:
    - masked (GPUs): at each of the 4 positions every adjustment runs on the whole batch,
      with the identity for the images that do not have it there; the batch stays one
      tensor, so there is no data-dependent indexing and no host-device synchronisation;
    - subsets (CPUs, `subsets` None): each adjustment runs only on the images that have it
      at that position, a quarter of the work (the hue's RGB-HSV round trips dominate).
    """
    n, dev = x.shape[0], x.device
    subsets = dev.type == "cpu" if subsets is None else subsets
    on = _bernoulli(n, cfg.jitter_p, dev)
    brightness = scale_brightness if cfg.brightness_mode == "scale" else adjust_brightness
    contrast = gray_contrast if cfg.contrast_mode == "gray" else adjust_contrast
    ops = [(brightness, 0.0, cfg.brightness), (contrast, 1.0, cfg.contrast),
           (adjust_saturation, 1.0, cfg.saturation), (adjust_hue, 0.0, cfg.hue)]
    values = [torch.where(on, _uniform(n, identity - s, identity + s, dev), identity)
              for _, identity, s in ops]
    order = torch.rand(n, 4, device=dev).argsort(dim=1)
    if subsets:
        x = x.clone()
    for position in range(4):
        for index, (op, identity, strength) in enumerate(ops):
            colour_only = op in (adjust_saturation, adjust_hue)
            if strength == 0 or cfg.jitter_p == 0 or (colour_only and x.shape[1] != 3):
                continue
            here = order[:, position] == index
            if subsets:
                idx = (here & on).nonzero().squeeze(1)
                if idx.numel():
                    x[idx] = op(x[idx], values[index][idx])
            else:
                x = op(x, torch.where(here, values[index], identity))
    return x


def blur_kernel_size(size: int, frac: float) -> int:
    """Odd kernel of about `frac` of the side: the official code's radius = int(size*frac/2)."""
    return 2 * int(int(size * frac) / 2) + 1


def random_gaussian_blur(x: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    k = blur_kernel_size(x.shape[-1], cfg.blur_kernel_frac)
    if cfg.blur_p == 0 or k < 3:
        return x
    sigma = _uniform(n, *cfg.blur_sigma, dev)
    blurred = gaussian_blur2d(x, (k, k), sigma[:, None].expand(n, 2).contiguous(), border_type="reflect")
    return torch.where(_per_image(_bernoulli(n, cfg.blur_p, dev)), blurred, x)


def random_solarize(x: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    if cfg.solarize_p == 0:
        return x
    on = _per_image(_bernoulli(x.shape[0], cfg.solarize_p, x.device))
    return torch.where(on & (x >= cfg.solarize_threshold), 1.0 - x, x)


def crop_from_full(image: torch.Tensor, cfg: ViewConfig, size: int, interpolation: str = "bicubic",
                   sampling: str = "rejection") -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """One view's random resized crop of a whole uint8 image (C, H, W) of any size: the box is
    drawn as in `crop_boxes` (crop_box), rounded to whole pixels, and resized to size x size (antialiased
    where it shrinks). Returns the uint8 crop and its box (x0, y0, w, h) in the image's pixels.
    The data workers call it once per view (see the module docstring); no flip, no colour."""
    _, height, width = image.shape
    x0, y0, w, h = crop_box(height, width, cfg.crop_scale, cfg.crop_ratio, sampling)
    w_px, h_px = max(1, min(width, round(w))), max(1, min(height, round(h)))
    x_px, y_px = min(round(x0), width - w_px), min(round(y0), height - h_px)
    crop = image[None, :, y_px:y_px + h_px, x_px:x_px + w_px].float()
    out = F.interpolate(crop, size=(size, size), mode=interpolation, antialias=interpolation != "nearest" and
                        (w_px > size or h_px > size), align_corners=None if interpolation == "nearest" else False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8), (x_px, y_px, w_px, h_px)


def augment_view(x: torch.Tensor, cfg: ViewConfig, size: int, interpolation: str = "bicubic",
                 crop_sampling: str = "rejection", cropped: bool = False) -> torch.Tensor:
    """One view of a float batch in [0, 1], every parameter drawn per image. Returns [0, 1].
    cropped: `x` holds this view's crops already (size x size, see `crop_from_full`): only the
    flip is drawn here, then the colour operations as usual."""
    n, c, height, width = x.shape
    flip = _bernoulli(n, cfg.flip_p, x.device)
    if cropped:
        if (height, width) != (size, size):
            raise ValueError(f"cropped views must be {size} x {size}, got {height} x {width}")
        x = torch.where(_per_image(flip), x.flip(-1), x)
    else:
        boxes = crop_boxes(n, height, width, cfg.crop_scale, cfg.crop_ratio, x.device, sampling=crop_sampling)
        x = resized_crop(x, boxes, size, flip, interpolation)
    x = random_rot90(x, cfg.rot90_p)
    x = color_jitter(x, cfg)  # one-channel images: brightness and contrast only
    if c == 3:
        gray = _per_image(_bernoulli(n, cfg.grayscale_p, x.device))
        x = torch.where(gray, grayscale(x).expand_as(x), x)
    x = random_gaussian_blur(x, cfg)
    return random_solarize(x, cfg)


def random_rot90(x: torch.Tensor, p: float) -> torch.Tensor:
    """Each square image turned by 90, 180 or 270 degrees (one at random) with probability p."""
    if p == 0:
        return x
    n = x.shape[0]
    turns = torch.where(_bernoulli(n, p, x.device), torch.randint(1, 4, (n,), device=x.device), 0)
    for k in (1, 2, 3):
        x = torch.where(_per_image(turns == k), torch.rot90(x, k, dims=(2, 3)), x)
    return x


# ---------------------------------------------------------------------------
# Full-precision bands (the data's own units: 16-bit, float, DICOM, any number of bands). Each
# band is standardised first with the data's own statistics, then only the operations that keep
# their meaning for any band run: the crop, flips, rotations by 90 degrees, blur, brightness and
# contrast on the standardised values, never clipped, and band dropout. Hue, saturation, colour
# dropping and solarization assume RGB pixels in [0, 1] and do not run: clipping standardised
# values to [0, 1] (as a brightness written for 8-bit pixels does) would destroy most of them
# (TorchGeo issue #3997, EuroSAT).


def band_jitter(x: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    """With probability jitter_p per image: brightness, delta ~ U(-brightness, brightness) added
    to every band (standardised units: a shift of delta standard deviations), and contrast,
    each band scaled around its own image mean by a factor ~ U(1 - contrast, 1 + contrast), in
    a random order per image. Never clipped."""
    n, dev = x.shape[0], x.device
    if cfg.jitter_p == 0 or (cfg.brightness == 0 and cfg.contrast == 0):
        return x
    on = _bernoulli(n, cfg.jitter_p, dev)
    delta = _per_image(torch.where(on, _uniform(n, -cfg.brightness, cfg.brightness, dev), 0.0))
    factor = _per_image(torch.where(on, _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, dev), 1.0))
    contrast_first = _per_image(_bernoulli(n, 0.5, dev))

    def contrast(v):
        mean = v.mean(dim=(2, 3), keepdim=True)
        return (v - mean) * factor + mean

    return torch.where(contrast_first, contrast(x) + delta, contrast(x + delta))


def band_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Each band of each image set to 0 (its mean, standardised) with probability p; an image
    that would lose every band keeps one at random."""
    if p == 0:
        return x
    n, c = x.shape[:2]
    drop = torch.rand(n, c, device=x.device) < p
    keep_one = F.one_hot(torch.randint(0, c, (n,), device=x.device), c).bool()
    drop = torch.where(drop.all(dim=1, keepdim=True), drop & ~keep_one, drop)
    return x * (~drop).to(x.dtype)[:, :, None, None]


def band_view(x: torch.Tensor, cfg: ViewConfig, size: int, mean, std, interpolation: str = "bicubic",
              crop_sampling: str = "rejection") -> torch.Tensor:
    """One view of a float batch in the data's own units (see above), every parameter drawn per
    image: crop and flip, standardise ((x - mean) / std per band), rotate, brightness and
    contrast, blur, band dropout. Returns standardised values."""
    n, _, height, width = x.shape
    flip = _bernoulli(n, cfg.flip_p, x.device)
    boxes = crop_boxes(n, height, width, cfg.crop_scale, cfg.crop_ratio, x.device, sampling=crop_sampling)
    x = normalize(resized_crop(x, boxes, size, flip, interpolation, clamp=False), mean, std)
    x = random_rot90(x, cfg.rot90_p)
    x = band_jitter(x, cfg)
    x = random_gaussian_blur(x, cfg)
    return band_dropout(x, cfg.band_drop_p)


PIXELS = ("8-bit", "full")


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Pixels -> float32 in [0, 1]: uint8 (0-255) is scaled, float is taken as [0, 1]
    (check_pixels). Any other integer type is refused: its range is unknown (torch.randint gives
    int64 that may hold 0-255 or 0-65535)."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"images of dtype {images.dtype}: give pixels as uint8 (0-255) or float in [0, 1], e.g. "
                        "images.to(torch.uint8) when they hold 0-255")
    return images.float()


def check_pixels(images: torch.Tensor) -> None:
    """Pixels are uint8, or float in [0, 1] (to_float); float values far outside [0, 1] are
    refused: they are normalised already, or 0-255 values in a float tensor."""
    to_float(images[:0])  # the dtype rule
    if images.is_floating_point() and images.numel():
        low, high = (float(v) for v in torch.aminmax(images.detach()))
        if low < -0.01 or high > 1.01:
            raise ValueError(f"float images must be pixels in [0, 1], these range over [{low:.3g}, {high:.3g}]: "
                             + ("divide 0-255 values by 255 (or give uint8)" if high > 1.01 and low >= -0.01 else
                                "they look normalised already; give pixels, which byol normalises itself"))


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    c = x.shape[1]
    m = torch.tensor(mean[:c], device=x.device, dtype=x.dtype).view(1, c, 1, 1)
    s = torch.tensor(std[:c], device=x.device, dtype=x.dtype).view(1, c, 1, 1)
    return (x - m) / s


class BatchAugment(torch.nn.Module):
    """A batch -> (view1, view2), normalised, on the batch's device. The fast path. pixels:
    "8-bit" (uint8, or float in [0, 1]: the paper's augmentations, then (x - mean) / std) or
    "full" (float in the data's own units: band_view, standardised with mean and std first)."""

    def __init__(self, cfg: AugmentConfig | None = None, channels_last: bool = False, cropped: bool = False,
                 pixels: str = "8-bit"):
        super().__init__()
        if pixels not in PIXELS:
            raise ValueError(f"pixels {pixels!r}: choose {' or '.join(PIXELS)}")
        self.cfg = cfg or AugmentConfig()
        self.channels_last = channels_last
        self.cropped = cropped  # images and partners are view 1's and view 2's crops (crop_from_full)
        self.pixels = pixels

    def view(self, x: torch.Tensor, view_cfg: ViewConfig, size: int | None = None, cropped: bool | None = None):
        c = self.cfg
        cropped = self.cropped if cropped is None else cropped
        if self.pixels == "full":
            out = band_view(x, view_cfg, size or c.size, c.mean, c.std, c.interpolation, c.crop_sampling)
        else:
            out = normalize(augment_view(x, view_cfg, size or c.size, c.interpolation, c.crop_sampling, cropped),
                            c.mean, c.std)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    @torch.no_grad()
    def forward(self, images: torch.Tensor, partners: torch.Tensor | None = None, size: int | None = None):
        """View 1 and view 2 of `images`, size x size (default cfg.size); with `partners` (nearby
        video frames, or view 2's crops of the same images), view 2 is drawn from the partner
        image instead.

        A side below cfg.size (the resolution schedule) gives the cfg.size views shrunk with
        an antialiased resize (`resize_views`), the views that a decoder resizing to that side
        would give. Sampling a crop straight at a side below its box's would alias (a
        grid_sample reads 4 or 16 pixels per output pixel, whatever the scale), and the
        network would learn from textures that the full-size images it is evaluated on do not
        have. Crops taken already (cropped) are resized the same way.

        Always computed in float32, also inside a mixed-precision region (as the reference
        computes its augmentations in the fp32 input pipeline): the views are quantised
        once, by the network's own autocast, not at every operation.
        """
        with torch.autocast(images.device.type, enabled=False):
            x = to_float(images)
            y = x if partners is None else to_float(partners)
            size = size or self.cfg.size
            if self.cropped or size < self.cfg.size:  # the full-size views, then the resize
                return resize_views((self.view(x, self.cfg.view1), self.view(y, self.cfg.view2)), size)
            return self.view(x, self.cfg.view1, size), self.view(y, self.cfg.view2, size)

    @torch.no_grad()
    def from_boxes(self, images: torch.Tensor, extents: torch.Tensor, boxes: torch.Tensor, size: int | None = None):
        """View 1 and view 2 of whole photos whose crop boxes the data workers drew (uint8 images
        on a padded canvas, each image's (height, width) in `extents`, (B, 2, 4) boxes): each box
        cut and resized to cfg.size here (crop_resize: Pillow's antialiased filter, as the
        workers' Pillow resize would), then flipped and coloured as crops taken in the workers
        are (`forward` with cropped views)."""
        with torch.autocast(images.device.type, enabled=False):
            kernel = self.cfg.interpolation
            crops = [crop_resize(images, extents, boxes[:, v], self.cfg.size, kernel) for v in (0, 1)]
            views = (self.view(crops[0], self.cfg.view1, cropped=True), self.view(crops[1], self.cfg.view2, cropped=True))
            return resize_views(views, size or self.cfg.size)

    @torch.no_grad()
    def small_views(self, images: torch.Tensor) -> list[torch.Tensor]:
        """cfg.small_crops views of whole images (B, C, H, W), each cfg.small_side x cfg.small_side,
        from the small view's crop range and colours (multi-crop); made at cfg.size and shrunk
        with an antialiased resize, as the scheduled views are (see `forward`)."""
        with torch.autocast(images.device.type, enabled=False):
            x = to_float(images)
            return list(resize_views([self.view(x, self.cfg.small, self.cfg.size, cropped=False)
                                      for _ in range(self.cfg.small_crops)], self.cfg.small_side))


def resize_views(views, size: int):
    """Views made at another side, resized to size x size (antialiased bilinear): the
    resolution schedule's views (see `BatchAugment.forward`)."""
    return tuple(v if v.shape[-1] == size else
                 F.interpolate(v, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                 .contiguous(memory_format=torch.channels_last if v.is_contiguous(memory_format=torch.channels_last)
                             else torch.contiguous_format) for v in views)


class TwoViewTransform:
    """Per-image transform for a Dataset: image -> (view1, view2) float tensors (C, S, S).

    Same code as `BatchAugment`, on a batch of one, so both placements agree exactly.
    """

    def __init__(self, cfg: AugmentConfig | None = None, cropped: bool = False, pixels: str = "8-bit"):
        self.batch = BatchAugment(cfg, cropped=cropped, pixels=pixels)

    def __call__(self, image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pair(image, image)

    def pair(self, image, partner) -> tuple[torch.Tensor, torch.Tensor]:
        """View 1 of `image` and view 2 of `partner` (the same image, a nearby frame, or view 2's crop)."""
        v1, v2 = self.batch(image_to_tensor(image).unsqueeze(0), image_to_tensor(partner).unsqueeze(0))
        return v1[0], v2[0]


def image_to_tensor(image) -> torch.Tensor:
    """PIL image, HWC numpy array or CHW tensor -> uint8 CHW tensor."""
    if isinstance(image, torch.Tensor):
        return image
    return torch.from_numpy(chw(np.asarray(image)))


def chw(arr: np.ndarray) -> np.ndarray:
    """An image array (H, W) or (H, W, C), as PIL and numpy hold it -> contiguous (C, H, W)."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))
