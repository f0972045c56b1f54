"""How far this project's augmentations are from DeepMind's reference, operation by operation.

DeepMind's BYOL (byol/utils/augmentations.py, byol/utils/dataset.py) differs from
`byol.augment` in six places. For each, this script measures the size of the difference on
real images (CIFAR-10 test images at 32 px, and the same images upsampled to 224 px for the
blur), so that each can be judged: matched where it matters, stated where it does not.

    python benchmarks/augment_vs_reference.py --cifar DIR        # one JSON object per line

1. crop sampling: torchvision's rejection sampling against the reference's one draw with
   width and height clamped to the image: the mean crop area.
2. saturation: a blend with the luma image (x - gray) * f + gray against the reference's
   scaling of S in HSV (tf.image.adjust_saturation): mean absolute pixel difference for
   f ~ U(0.8, 1.2).
3. blur padding: reflect against the reference's zero padding ('SAME'): mean absolute
   difference over the whole image and over the border pixels, at 224 px.
4. bicubic kernel: PyTorch's a = -0.75 against TF's (and PIL's) a = -0.5 for the resize of
   a crop to the output size: mean absolute difference.
5. autocast: the views computed in bf16 against fp32 (the augmentations now always run in
   fp32; this measures what running them inside bf16 autocast would change).
6. the bias of the heads' last layer (the reference has none): not an image operation;
   the heads follow the reference (byol.heads.MLP has no bias there).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def load(cifar: str, n: int) -> torch.Tensor:
    from byol.data.image_sets import decode_to_memory
    from byol.data.listing import list_images

    test = os.path.join(cifar, "test.tar.gz")
    if not os.path.exists(test):
        sys.exit(f"augment_vs_reference: {test} not found; pass --cifar DIR")
    images = list_images(test)
    return decode_to_memory(images, 32, limit=n).images.float() / 255


def crop_areas(n: int = 200_000) -> dict:
    from byol.core.augment import crop_boxes

    torch.manual_seed(0)
    out = {}
    for sampling in ("rejection", "clamp"):
        _, _, w, h = crop_boxes(n, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), "cpu", sampling=sampling)
        out[sampling] = round((w * h / 1024).mean().item(), 4)
    return {"difference": "crop sampling", "mean_crop_area": out, "reference": "clamp"}


def saturation(x: torch.Tensor) -> dict:
    from kornia.color import hsv_to_rgb, rgb_to_hsv

    from byol.core.augment import adjust_saturation

    torch.manual_seed(0)
    f = torch.rand(x.shape[0]) * 0.4 + 0.8
    ours = adjust_saturation(x.clone(), f)
    hsv = rgb_to_hsv(x)
    hsv = torch.cat([hsv[:, :1], (hsv[:, 1:2] * f.view(-1, 1, 1, 1)).clamp(0, 1), hsv[:, 2:]], dim=1)
    ref = hsv_to_rgb(hsv).clamp(0, 1)
    d = (ours - ref).abs()
    return {"difference": "saturation: luma blend vs HSV scaling", "mean_abs": round(d.mean().item(), 5),
            "mean_abs_in_uint8_steps": round(255 * d.mean().item(), 3), "p99_abs": round(d.quantile(0.99).item(), 4)}


def blur_padding(x: torch.Tensor) -> dict:
    from kornia.filters import gaussian_blur2d

    from byol.core.augment import blur_kernel_size

    big = F.interpolate(x[:64], size=(224, 224), mode="bilinear", align_corners=False).clamp(0, 1)
    k = blur_kernel_size(224, 0.1)
    sigma = torch.full((big.shape[0], 2), 1.0)
    reflect = gaussian_blur2d(big, (k, k), sigma, border_type="reflect")
    zero = gaussian_blur2d(big, (k, k), sigma, border_type="constant")
    d = (reflect - zero).abs()
    r = k // 2
    border = torch.ones(224, 224, dtype=torch.bool)
    border[r:-r, r:-r] = False
    return {"difference": "blur padding: reflect vs zero (224 px, sigma 1)", "kernel": k,
            "mean_abs_whole_image": round(d.mean().item(), 5),
            "mean_abs_border_pixels": round(d[..., border].mean().item(), 4),
            "border_fraction": round(border.float().mean().item(), 4)}


def bicubic(x: torch.Tensor) -> dict:
    """Crops of 8-32 px resized to 32 px: grid_sample (a = -0.75) against PIL's bicubic (a = -0.5,
    the kernel of TF's resize), on the same integer crop boxes."""
    from byol.core.augment import resized_crop

    rng = np.random.default_rng(0)
    diffs = []
    for i in range(min(256, x.shape[0])):
        s = int(rng.integers(8, 33))
        x0, y0 = int(rng.integers(0, 33 - s)), int(rng.integers(0, 33 - s))
        img = x[i:i + 1]
        boxes = (torch.tensor([float(x0)]), torch.tensor([float(y0)]), torch.tensor([float(s)]), torch.tensor([float(s)]))
        ours = resized_crop(img.clone(), boxes, 32, torch.zeros(1, dtype=torch.bool), "bicubic")[0]
        pil = Image.fromarray((img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        ref = pil.crop((x0, y0, x0 + s, y0 + s)).resize((32, 32), Image.BICUBIC)
        ref = torch.from_numpy(np.asarray(ref, np.float32) / 255).permute(2, 0, 1)
        diffs.append((ours - ref).abs().mean().item())
    return {"difference": "bicubic a = -0.75 (grid_sample) vs -0.5 (TF, PIL)", "crops": len(diffs),
            "mean_abs": round(float(np.mean(diffs)), 5), "mean_abs_in_uint8_steps": round(255 * float(np.mean(diffs)), 3)}


def autocast(x: torch.Tensor) -> dict:
    from byol.core.augment import AugmentConfig, augment_view, paper_view1

    cfg = AugmentConfig(size=32)
    u8 = (x * 255).round().to(torch.uint8)
    torch.manual_seed(0)
    fp32 = augment_view(u8.float() / 255, paper_view1(), 32)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = augment_view(u8.float() / 255, paper_view1(), 32)
    d = (fp32 - bf16.float()).abs()
    return {"difference": "augmentation in bf16 autocast vs fp32", "mean_abs": round(d.mean().item(), 5),
            "mean_abs_in_uint8_steps": round(255 * d.mean().item(), 3), "max_abs": round(d.max().item(), 4),
            "interpolation": cfg.interpolation}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", required=True, help="folder with CIFAR-10's test.tar.gz")
    p.add_argument("--images", type=int, default=1000)
    args = p.parse_args(argv)
    x = load(args.cifar, args.images)
    for row in (crop_areas(), saturation(x), blur_padding(x), bicubic(x), autocast(x)):
        print(json.dumps({"benchmark": "augment-vs-reference", "torch": torch.__version__, **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
