"""Decoding image files: a path or bytes -> uint8 (C, H, W) arrays, upright, RGB or gray.

Photographs for training (data.large_images: full) take the fast path, `photo_views`: both
views' random resized crops come from one decode of the file.
1. The crop boxes are drawn on the photo's full-size upright geometry, read from the header
   (core.augment.crop_box: crop_boxes' rule, DeepMind's `_decode_and_random_crop`, scale 0.08-1
   of the area, aspect 3/4-4/3), exactly as on the decoded picture.
2. A JPEG is decoded at the largest DCT-domain reduction (libjpeg's scaled decoding at 1/2, 1/4
   or 1/8, with either decoder: see decode) that still leaves every crop at least its output
   size, or at least the resolution of the photo bounded by data.load_size where that is smaller
   (the bound's resolution is all the plain path had).
3. Each box, mapped onto the decoded picture by the decode's scale (decode_scale: n/8 exactly,
   not the decoded width over the full one, which a rounded-up edge pixel would stretch), is
   resized to the output size in one pass by PIL (antialiased where it shrinks).
simplejpeg (libjpeg-turbo; the `fast-jpeg` extra) decodes JPEGs where it is installed and
data.jpeg_decoder allows it, Pillow otherwise. Flips and colour happen on the training device.
"""
from __future__ import annotations

import io
import math
import os

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from byol.core.augment import AugmentConfig, ViewConfig, chw, crop_box
from byol.data.bands import Pixels

RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
            "nearest": Image.Resampling.NEAREST}
ORIENTATION = 0x0112  # the EXIF tag; values 5-8 turn the picture by 90 degrees
# What ImageOps.exif_transpose does for each EXIF orientation (the simplejpeg path applies it).
TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}
JPEG_DECODERS = ("auto", "pillow", "simplejpeg")


def jpeg_decoder(name: str = "auto") -> str:
    """The JPEG decoder to use: 'simplejpeg' where it imports and `name` allows it, else 'pillow'."""
    if name not in JPEG_DECODERS:
        raise ValueError(f"jpeg decoder {name!r}: choose one of {', '.join(JPEG_DECODERS)}")
    if name == "pillow":
        return "pillow"
    try:
        import simplejpeg  # noqa: F401
    except ImportError:
        if name == "simplejpeg":
            raise ImportError("data.jpeg_decoder simplejpeg: simplejpeg is not installed; "
                              "pip install 'byol[fast-jpeg]', or set data.jpeg_decoder auto") from None
        return "pillow"
    return "simplejpeg"


def read_header(source: bytes | str) -> Image.Image:
    """The image opened lazily: size, mode, format and EXIF are known, no pixel is decoded."""
    if (len(source) if isinstance(source, bytes) else os.path.getsize(source)) == 0:
        raise UnidentifiedImageError("an empty file (0 bytes)")
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def orientation(header: Image.Image) -> int:
    """The EXIF orientation (1: upright) of a JPEG; 1 for other formats or without EXIF."""
    if header.format != "JPEG":
        return 1
    return int(header.getexif().get(ORIENTATION, 1) or 1)


def upright_size(header: Image.Image) -> tuple[int, int]:
    """(width, height) as viewers show the image: axes swapped by EXIF orientations 5-8."""
    w, h = header.size
    return (h, w) if orientation(header) in (5, 6, 7, 8) else (w, h)


def decode(header: Image.Image, source: bytes | str, channels: int, fraction: float = 1.0,
           decoder: str = "pillow", as_array: bool = False) -> Image.Image | np.ndarray:
    """Decode fully (so truncation shows here), upright, RGB (3) or L (1). A JPEG is decoded at
    the smallest DCT scale that keeps at least `fraction` of its width and height: one of
    Pillow's (1/2, 1/4, 1/8, pillow_scale) with either decoder, so that a plain Pillow
    deployment reads an image as byol does (docs/export.md's preprocess). These are also the
    fast ones: libjpeg-turbo has SIMD inverse DCTs for them, while 3/8 to 7/8 take plain-C
    scaled transforms that are slower than decoding at full size. as_array: a uint8 (H, W, C)
    array instead of a PIL image (simplejpeg's own, not copied)."""
    w, h = header.size
    wanted = (max(1, math.ceil(w * fraction)), max(1, math.ceil(h * fraction)))
    if fraction < 1:
        scale = pillow_scale((w, h), wanted)
        wanted = (-(-w // scale), -(-h // scale))
    if header.format == "JPEG" and decoder == "simplejpeg" and header.mode in ("RGB", "L"):
        import simplejpeg

        data = source if isinstance(source, bytes) else open(source, "rb").read()
        try:
            arr = simplejpeg.decode_jpeg(data, colorspace="RGB" if channels == 3 else "GRAY",
                                         min_width=wanted[0], min_height=wanted[1])
        except ValueError as e:  # simplejpeg's error for a damaged JPEG
            raise OSError(str(e)) from None
        turn = TRANSPOSE.get(orientation(header))
        if as_array and turn is None:
            return arr
        img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr, "L" if channels == 1 else "RGB")
        img = img.transpose(turn) if turn is not None else img
    else:
        if header.format == "JPEG" and fraction < 1:
            header.draft("L" if channels == 1 else "RGB", wanted)
        header.load()
        # EXIF orientation (a phone's portrait photo): upright, as viewers show it; no copy where upright already
        img = ImageOps.exif_transpose(header) if header.format != "JPEG" or orientation(header) != 1 else header
        img = to_8_bit(img)
        mode = "RGB" if channels == 3 else "L"
        img = img if img.mode == mode else img.convert(mode)
    if as_array:
        arr = np.array(img)  # (np.asarray goes through Pillow's array interface, several times slower)
        return arr[:, :, None] if arr.ndim == 2 else arr
    return img


def pillow_scale(size: tuple[int, int], wanted: tuple[int, int]) -> int:
    """The reduction Pillow's JPEG draft picks for an image of `size` asked for at least `wanted`
    (PIL.JpegImagePlugin.JpegImageFile.draft): the largest of 8, 4, 2, 1 at most both integer
    ratios."""
    ratio = min(size[0] // wanted[0], size[1] // wanted[1])
    return next(s for s in (8, 4, 2, 1) if ratio >= s)


def open_image(source: bytes | str, channels: int) -> Image.Image:
    """The whole image at full resolution, upright, RGB (3) or L (1)."""
    return decode(read_header(source), source, channels)


def to_8_bit(img: Image.Image) -> Image.Image:
    """16-bit grayscale (PNG's I;16, or PIL's 32-bit I holding values above 255) scaled to 8 bits,
    65535 -> 255. PIL's own convert clips such values at 255, which turns most images white.
    32-bit float images (TIFF's F) by their range: [0, 1] -> 0-255, [0, 255] as it is; another
    range is refused (the image is skipped and said), since no scale would be sure."""
    if img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        low, high = (float(arr.min(initial=0)), float(arr.max(initial=0))) if arr.size else (0.0, 0.0)
        if not np.isfinite(arr).all() or low < 0 or high > 255:
            raise ValueError(f"a float image with values in [{low:.3g}, {high:.3g}], neither [0, 1] nor [0, 255]; "
                             "save it as 8- or 16-bit, or scaled to [0, 1]")
        scale = 255.0 if high <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.round(arr * scale), 0, 255).astype(np.uint8), "L")
    if not (img.mode.startswith("I;16") or img.mode == "I"):
        return img
    arr = np.asarray(img).astype(np.float64)
    scale = 257.0 if img.mode != "I" or arr.max(initial=0) > 255 else 1.0  # an I image of 8-bit values stays
    return Image.fromarray(np.clip(np.round(arr / scale), 0, 255).astype(np.uint8), "L")


def numpy_rng() -> np.random.Generator:
    """A numpy generator drawn from torch's: the draws of an item read under a seeded torch
    generator (byol.data.loader.SeededItems) follow from its seed."""
    return np.random.default_rng(int(torch.randint(2**62, (1,))))


def fit_image(img: Image.Image, size: int | None, mode: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """PIL image -> uint8 (C, size, size) array.

    mode 'resize': shorter side to `size` (bicubic, antialiased), then a centre square.
    mode 'crop': a random size x size crop without resizing (large images such as DIV2K,
    as DL-Art-School does); images smaller than `size` are resized up first.
    size None keeps the image as it is.
    """
    if size is not None:
        w, h = img.size
        if mode == "crop" and min(w, h) >= size:
            rng = rng or numpy_rng()
            x0 = int(rng.integers(0, w - size + 1))
            y0 = int(rng.integers(0, h - size + 1))
            img = img.crop((x0, y0, x0 + size, y0 + size))
        else:
            if min(w, h) != size:
                scale = size / min(w, h)
                img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
    return picture_array(img)


def picture_array(img: Image.Image) -> np.ndarray:
    """A decoded picture as uint8 (C, H, W), the layout every tensor of this package has."""
    return chw(np.array(img, dtype=np.uint8))


def decode_for_crops(source: bytes | str, channels: int, views: tuple[ViewConfig, ...], size: int,
                     bound: int | None, sampling: str = "rejection", decoder: str = "pillow", reduce: bool = True,
                     as_array: bool = False) -> tuple[Image.Image | np.ndarray, list[tuple[float, ...]], float]:
    """One decode of the file for each view's random resized crop: (the decoded picture, upright,
    a PIL image or with as_array a uint8 (H, W, C) array; each view's box (x0, y0, w, h) in the
    upright full-size image's pixels, drawn before decoding (crop_box); the decode's scale,
    decode_scale: a box times it is in the picture's pixels). bound: the shorter side whose
    resolution suffices (data.load_size; None: full). reduce: decode a JPEG at a reduced DCT
    scale where the crops allow (the fast path's lever)."""
    header = read_header(source)
    width, height = upright_size(header)
    boxes = [crop_box(height, width, view.crop_scale, view.crop_ratio, sampling) for view in views]
    enough = 1.0 if bound is None else min(1.0, bound / min(width, height))
    fraction = max(min(enough, max(size / w, size / h)) for _, _, w, h in boxes) if reduce else 1.0
    image = decode(header, source, channels, fraction, decoder, as_array=as_array)
    decoded = (image.shape[1], image.shape[0]) if as_array else image.size
    return image, boxes, decode_scale(width, height, *decoded)


def cut_views(source: bytes | str, channels: int, views: tuple[ViewConfig, ...], size: int, bound: int | None,
              interpolation: str = "bicubic", sampling: str = "rejection", decoder: str = "pillow",
              reduce: bool = True) -> tuple[list[torch.Tensor], list[tuple[float, float, float, float]]]:
    """Each view's random resized crop (uint8 (C, size, size)) from one decode of the file
    (decode_for_crops), resized by PIL, and its box (x0, y0, w, h) in the upright full-size
    image's pixels (see the module docstring)."""
    image, boxes, s = decode_for_crops(source, channels, views, size, bound, sampling, decoder, reduce)
    crops = [torch.from_numpy(picture_array(image.resize(
        (size, size), RESAMPLE[interpolation], box=(x0 * s, y0 * s, (x0 + w) * s, (y0 + h) * s))))
        for x0, y0, w, h in boxes]
    return crops, boxes


def photo_and_boxes(source: bytes | str, channels: int, crops: AugmentConfig, bound: int | None,
                    decoder: str = "pillow") -> tuple[torch.Tensor, torch.Tensor]:
    """One photo decoded at the scale its two crops need (decode_for_crops), uint8 (C, h, w) (a
    view of the decoder's (h, w, C) array: channels last in memory, no copy), and view 1's and
    view 2's boxes in its pixels, (2, 4) as (x0, y0, w, h): what a worker passes when the
    training device cuts and resizes the crops (core.augment.crop_resize)."""
    image, boxes, s = decode_for_crops(source, channels, (crops.view1, crops.view2), crops.size, bound,
                                       crops.crop_sampling, decoder, as_array=True)
    pixels = torch.from_numpy(image).permute(2, 0, 1)
    return pixels, torch.tensor([[x0 * s, y0 * s, w * s, h * s] for x0, y0, w, h in boxes], dtype=torch.float32)


def decode_scale(width: int, height: int, decoded_width: int, decoded_height: int) -> float:
    """The scale of a decode: libjpeg's DCT scaling decodes a W x H picture at n/8 to
    ceil(W n / 8) x ceil(H n / 8) pixels (libjpeg-turbo's TJSCALED); the n/8 that gives the
    decoded size, else (no reduction, or another decoder) the decoded width over the full one."""
    if (decoded_width, decoded_height) == (width, height):
        return 1.0
    for n in range(1, 8):
        if (-(-width * n // 8), -(-height * n // 8)) == (decoded_width, decoded_height):
            return n / 8
    return decoded_width / width


def photo_views(source: bytes | str, channels: int, crops: AugmentConfig, bound: int | None,
                decoder: str = "pillow") -> tuple[torch.Tensor, torch.Tensor]:
    """View 1's and view 2's crops of one photo (cut_views with the augmentation settings)."""
    (v1, v2), _ = cut_views(source, channels, (crops.view1, crops.view2), crops.size, bound, crops.interpolation,
                            crops.crop_sampling, decoder)
    return v1, v2


def decode_item(source: bytes | str, channels: int, size: int | None, mode: str,
                rng: np.random.Generator | None = None, crops: AugmentConfig | None = None,
                decoder: str = "pillow", device_crops: bool = False, pixels: Pixels | None = None):
    """(uint8 image, partner or None, boxes or None) for one training image, by
    `data.large_images` mode; with full-precision `pixels` (data.pixels full), a float32 image in
    the data's units instead (Pixels.image), read as 'resize' or 'crop'.

    'resize' and 'crop': the image at size x size (see fit_image), no partner; a JPEG that
    'resize' shrinks is decoded at the DCT scale that keeps its shorter side at least `size`.
    'full': view 1's and view 2's crops (photo_views, `crops`: the augmentation settings, `size`:
    the bound on the shorter side), as DeepMind's `_decode_and_random_crop`
    (byol/utils/dataset.py); the device then flips and colours them. With device_crops, the
    decoded photo and the two boxes instead (photo_and_boxes): the device cuts the crops too.
    """
    if pixels is not None and pixels.full:
        return pixels.image(source, channels, size, mode, rng), None, None
    if mode == "full":
        if crops is None:
            raise ValueError("large_images 'full' crops in the data workers: pass the augmentation settings")
        if device_crops:
            pixels, boxes = photo_and_boxes(source, channels, crops, size, decoder)
            return pixels, None, boxes
        return (*photo_views(source, channels, crops, size, decoder), None)
    header = read_header(source)
    fraction = min(1.0, size / min(header.size)) if size is not None and mode == "resize" else 1.0
    return torch.from_numpy(fit_image(decode(header, source, channels, fraction, decoder), size, mode, rng)), None, None
