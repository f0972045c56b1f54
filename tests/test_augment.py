import math

import numpy as np
import pytest
import torch

from byol.core.augment import (AugmentConfig, BatchAugment, TwoViewTransform, ViewConfig, adjust_brightness,
                          augment_view, blur_kernel_size, crop_boxes, paper_view1, paper_view2, random_solarize)


def test_paper_views_are_asymmetric():
    v1, v2 = paper_view1(), paper_view2()
    assert (v1.blur_p, v1.solarize_p) == (1.0, 0.0)
    assert (v2.blur_p, v2.solarize_p) == (0.1, 0.2)
    for v in (v1, v2):
        assert v.crop_scale == (0.08, 1.0) and v.flip_p == 0.5 and v.jitter_p == 0.8
        assert (v.brightness, v.contrast, v.saturation, v.hue) == (0.4, 0.4, 0.2, 0.1)
        assert v.grayscale_p == 0.2 and v.blur_sigma == (0.1, 2.0)


def test_parameters_are_drawn_per_image():
    torch.manual_seed(0)
    one = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    batch = one.expand(16, -1, -1, -1).contiguous()
    v1, v2 = BatchAugment(AugmentConfig(size=24))(batch)
    assert v1.shape == (16, 3, 24, 24) and v2.shape == (16, 3, 24, 24)
    # identical inputs, but every image gets its own crop/flip/jitter: all outputs differ
    flat = v1.flatten(1)
    dist = torch.cdist(flat, flat)
    assert (dist + torch.eye(16) * 1e9).min() > 1e-3


def test_crop_boxes_respect_ranges():
    torch.manual_seed(0)
    x0, y0, w, h = crop_boxes(5000, 40, 30, (0.08, 1.0), (3 / 4, 4 / 3), "cpu")
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= 30 + 1e-4).all() and (y0 + h <= 40 + 1e-4).all()
    area = w * h / (40 * 30)
    fallback = (w == 30) & (h == 40)  # centre crop fallback (aspect 0.75 fits)
    assert ((area >= 0.08 - 1e-4) & (area <= 1 + 1e-4)).all()
    ratio = (w / h)[~fallback]
    assert (ratio >= 3 / 4 - 1e-4).all() and (ratio <= 4 / 3 + 1e-4).all()
    assert area.std() > 0.1  # really random, per image


def test_flip_only_mirrors():
    x = torch.rand(4, 3, 8, 8)
    cfg = ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0, jitter_p=0.0, grayscale_p=0.0,
                     blur_p=0.0, solarize_p=0.0)
    out = augment_view(x, cfg, 8, "bilinear")
    assert torch.allclose(out, x.flip(-1), atol=1e-5)


def test_solarize_threshold_is_half_on_unit_range():
    # uint8 128 = 0.502 is inverted, 127 = 0.498 is not (PITFALLS: 0.5 out of 255 inverts all)
    x = torch.tensor([[127, 128, 255, 0]], dtype=torch.uint8).float().div(255).view(1, 1, 1, 4)
    out = random_solarize(x, ViewConfig(solarize_p=1.0))
    assert torch.allclose(out.flatten(), torch.tensor([127 / 255, 1 - 128 / 255, 0.0, 0.0]))


def test_brightness_is_additive():
    x = torch.full((2, 3, 2, 2), 0.5)
    out = adjust_brightness(x, torch.tensor([0.2, -0.6]))
    assert torch.allclose(out[0], torch.full((3, 2, 2), 0.7)) and torch.allclose(out[1], torch.zeros(3, 2, 2))


def test_brightness_scale_mode_multiplies():
    from byol.core.augment import color_jitter
    x = torch.full((1, 3, 2, 2), 0.5)
    cfg = ViewConfig(jitter_p=1.0, contrast=0.0, saturation=0.0, hue=0.0, brightness_mode="scale")
    torch.manual_seed(0)
    scaled = color_jitter(x, cfg)
    torch.manual_seed(0)
    added = color_jitter(x, ViewConfig(jitter_p=1.0, contrast=0.0, saturation=0.0, hue=0.0))
    delta = added[0, 0, 0, 0] - 0.5  # the same draw, added
    assert torch.allclose(scaled, torch.full_like(x, 0.5 * (1 + delta.item())))


def test_contrast_gray_mode_scales_around_the_luma_mean():
    from byol.core.augment import adjust_contrast, gray_contrast, grayscale
    x = torch.rand(2, 3, 4, 4)
    factor = torch.tensor([0.5, 1.2])
    m = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(gray_contrast(x.clone(), factor), ((x - m) * factor.view(-1, 1, 1, 1) + m).clamp(0, 1))
    mc = x.mean(dim=(2, 3), keepdim=True)  # the default: each channel's own mean
    assert torch.allclose(adjust_contrast(x.clone(), factor), ((x - mc) * factor.view(-1, 1, 1, 1) + mc).clamp(0, 1))


def test_blur_kernel_is_about_ten_percent():
    assert blur_kernel_size(224, 0.1) == 23  # the official code's 23 for 224
    assert blur_kernel_size(32, 0.1) == 3
    assert blur_kernel_size(96, 0.1) % 2 == 1


def test_jitter_probability_per_image():
    torch.manual_seed(1)
    x = torch.rand(1, 3, 16, 16).expand(2000, -1, -1, -1).contiguous()
    cfg = ViewConfig(crop_scale=(1, 1), crop_ratio=(1, 1), flip_p=0, jitter_p=0.8, grayscale_p=0,
                     blur_p=0, solarize_p=0)
    out = augment_view(x, cfg, 16, "bilinear")
    changed = ((out - x).abs().flatten(1).max(1).values > 1e-4).float().mean().item()
    assert abs(changed - 0.8) < 0.04


def test_grayscale_probability():
    torch.manual_seed(2)
    x = torch.rand(1, 3, 8, 8).expand(2000, -1, -1, -1).contiguous()
    cfg = ViewConfig(crop_scale=(1, 1), crop_ratio=(1, 1), flip_p=0, jitter_p=0, grayscale_p=0.2, blur_p=0,
                     solarize_p=0)
    out = augment_view(x, cfg, 8, "bilinear")
    gray = ((out[:, 0] - out[:, 1]).abs().flatten(1).max(1).values < 1e-6).float().mean().item()
    assert abs(gray - 0.2) < 0.03


def test_two_view_transform_matches_batch_shapes_and_accepts_pil():
    from PIL import Image
    import numpy as np

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    v1, v2 = TwoViewTransform(AugmentConfig(size=32))(img)
    assert v1.shape == (3, 32, 32) and v2.shape == (3, 32, 32) and v1.dtype == torch.float32
    assert not torch.allclose(v1, v2)


def test_one_channel_images():
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    v1, v2 = BatchAugment(AugmentConfig(size=28, mean=(0.5,), std=(0.5,)))(x)
    assert v1.shape == (4, 1, 28, 28) and torch.isfinite(v2).all()


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_views_stay_in_range(p):
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8).float() / 255
    cfg = ViewConfig(solarize_p=p, blur_p=p)
    out = augment_view(x, cfg, 32)
    assert out.min() >= 0 and out.max() <= 1 and not math.isnan(out.sum().item())


def test_crop_sampling_rejection_and_clamp_have_their_references_mean_areas():
    # torchvision's rejection sampling vs DeepMind's one draw + clamp (byol/utils/dataset.py)
    torch.manual_seed(0)
    for sampling, mean_area in (("rejection", 0.478), ("clamp", 0.534)):
        x0, y0, w, h = crop_boxes(200_000, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), "cpu", sampling=sampling)
        assert (w * h / 1024).mean().item() == pytest.approx(mean_area, abs=0.004)
        assert (x0 >= 0).all() and (x0 + w <= 32 + 1e-4).all() and (y0 + h <= 32 + 1e-4).all()


@pytest.mark.parametrize("sampling", ["rejection", "clamp"])
def test_one_box_at_a_time_follows_the_batched_rule(sampling):
    """The data workers draw each image's box with crop_box (one call to torch's generator); its
    area, aspect and position fractions have crop_boxes' distribution (deciles within 0.01)."""
    from byol.core.augment import crop_box

    torch.manual_seed(0)
    x0, y0, w, h = crop_boxes(20_000, 300, 500, (0.08, 1.0), (3 / 4, 4 / 3), "cpu", sampling=sampling)
    batched = np.stack([(w * h / 150_000).numpy(), (w / h).numpy(), (x0 / 500).numpy(), (y0 / 300).numpy()])
    torch.manual_seed(1)
    one = np.array([[bw * bh / 150_000, bw / bh, bx / 500, by / 300] for bx, by, bw, bh in
                    (crop_box(300, 500, (0.08, 1.0), (3 / 4, 4 / 3), sampling) for _ in range(20_000))]).T
    deciles = np.linspace(0.1, 0.9, 9)
    assert np.abs(np.quantile(batched, deciles, axis=1) - np.quantile(one, deciles, axis=1)).max() < 0.015
    tall = crop_box(300, 1000, (0.99, 1.0), (1.0, 1.0), sampling)  # no square of 99 % of the area fits
    assert tall[3] <= 300 + 1e-6 and tall[2] <= 1000 + 1e-6


def test_cropped_views_are_only_flipped_and_coloured():
    from byol.core.augment import augment_view, crop_from_full

    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    crop, (x0, y0, w, h) = crop_from_full(image, ViewConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.5, 1.5)), 20,
                                          "nearest")
    assert (x0, y0, w, h) == (0, 0, 60, 40) and crop.shape == (3, 20, 20) and crop.dtype == torch.uint8
    x = torch.rand(8, 3, 20, 20)
    plain = ViewConfig(jitter_p=0, grayscale_p=0, blur_p=0, solarize_p=0, flip_p=0.5)
    out = augment_view(x, plain, 20, cropped=True)
    same = [(torch.equal(out[i], x[i]), torch.equal(out[i], x[i].flip(-1))) for i in range(8)]
    assert all(a or b for a, b in same) and any(b and not a for a, b in same)
    with pytest.raises(ValueError, match="20 x 20"):
        augment_view(torch.rand(2, 3, 24, 24), plain, 20, cropped=True)


def test_augmentation_runs_in_float32_inside_autocast():
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v1, v2 = BatchAugment(AugmentConfig(size=16))(x)
    assert v1.dtype == torch.float32 and v2.dtype == torch.float32


def test_colour_jitter_on_subsets_equals_the_masked_batch():
    from byol.core.augment import color_jitter

    x = torch.rand(64, 3, 8, 8)
    cfg = ViewConfig()
    torch.manual_seed(0)
    masked = color_jitter(x.clone(), cfg, subsets=False)
    torch.manual_seed(0)
    subsets = color_jitter(x.clone(), cfg, subsets=True)
    assert torch.allclose(masked, subsets, atol=1e-5)
    assert (masked - x).abs().amax(dim=(1, 2, 3)).gt(1e-3).float().mean() > 0.5  # most images changed


def test_the_rejection_fallback_crop_is_centred_as_torchvisions():
    """When none of the ten draws fits (here: an aspect ratio of 3 on a square image), the crop
    is the whole image's largest box of the clamped ratio, centred, as torchvision's
    RandomResizedCrop places it (it was placed at random)."""
    x0, y0, w, h = crop_boxes(64, 100, 100, (0.9, 1.0), (3.0, 3.0), "cpu")
    assert torch.allclose(w, torch.full_like(w, 100.0)) and torch.allclose(h, torch.full_like(h, 100 / 3))
    assert torch.allclose(x0, torch.zeros_like(x0)) and torch.allclose(y0, torch.full_like(y0, (100 - 100 / 3) / 2))
