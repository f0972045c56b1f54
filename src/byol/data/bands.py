"""Images beyond 8-bit pictures, read at full precision: multi-band TIFF and GeoTIFF (tifffile),
NumPy arrays (.npy, .npz), DICOM (pydicom), and 16-bit or float images, each as float32
(bands, height, width) in the data's own units (data.pixels: full).

    read_bands("scene.tif")                        # (13, 256, 256): a Sentinel-2 tile as stored
    read_bands("slice.dcm", window=(40.0, 400.0))  # (1, 512, 512) Hounsfield units, in the window
    band_shape("scene.tif")                        # (13, 256, 256), from the header alone

The format is told from the file's first bytes, not its name (a shard's member has none):
NumPy's magic, a zip (.npz), DICOM's "DICM" at byte 128, TIFF's byte-order mark; anything else
goes to Pillow, its values as stored (a 16-bit PNG keeps 0-65535).

Layout: a 2-D array is one band; a 3-D array is (C, H, W) or (H, W, C): TIFF's series axes say
which where they name a sample or channel axis, else the shape does (the band axis is the one
shorter than the other two), else data.layout must. DICOM: the stored values times
RescaleSlope plus RescaleIntercept (physical units: Hounsfield units for CT), clipped to an
optional window (centre, width). data.bands picks bands by their 0-based index, in the order
given. tifffile and pydicom are optional extras (`byol[tiff]`, `byol[dicom]`); a file that needs
one that is missing is one line naming both.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from byol.data.listing import DataError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, either byte order
ARRAY_SUFFIXES = (".npy", ".npz", ".dcm", ".dicom")  # read here only; TIFF and the rest are also pictures
LAYOUTS = ("auto", "chw", "hwc")


def head(source: bytes | str, n: int = 132) -> bytes:
    if isinstance(source, bytes):
        return source[:n]
    with open(source, "rb") as f:
        return f.read(n)


def kind_of(source: bytes | str) -> str:
    """The file's format from its first bytes: npy, npz, dicom, tiff or picture (Pillow's)."""
    start = head(source)
    if start.startswith(NPY_MAGIC):
        return "npy"
    if start.startswith(ZIP_MAGIC):
        return "npz"
    if start[128:132] == b"DICM":
        return "dicom"
    if start[:4] in TIFF_MAGICS:
        return "tiff"
    return "picture"


def stream(source: bytes | str):
    return io.BytesIO(source) if isinstance(source, bytes) else source


def need(module: str, extra: str):
    """An optional reader's module, or one line that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"reading this file needs {module}, which is not installed: pip install 'byol[{extra}]'") \
            from None


def as_chw(arr: np.ndarray, layout: str = "auto", axes: str | None = None) -> np.ndarray:
    """A 2-D or 3-D array as (C, H, W); see the module docstring for how the layout is told."""
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise ValueError(f"an array of shape {arr.shape}: give images as (H, W), (C, H, W) or (H, W, C)")
    if layout == "auto" and axes and len(axes) == 3:
        band = next((i for i, a in enumerate(axes) if a in "SCIQ"), None)  # tifffile: sample, channel, ...
        if band in (0, 2):
            layout = "chw" if band == 0 else "hwc"
    if layout == "auto":
        c0, c2 = arr.shape[0] < min(arr.shape[1:]), arr.shape[2] < min(arr.shape[:2])
        if c0 == c2:
            raise ValueError(f"an array of shape {arr.shape}: its band axis cannot be told from the shape; set "
                             "data.layout chw or hwc")
        layout = "chw" if c0 else "hwc"
    return arr if layout == "chw" else np.moveaxis(arr, -1, 0)


def read_npz(source: bytes | str) -> np.ndarray:
    """The array of an .npz: its only one, or the one named 'image'."""
    with np.load(stream(source), allow_pickle=False) as z:
        names = list(z.files)
        if len(names) != 1 and "image" not in names:
            raise ValueError(f"an .npz with arrays {names[:5]}: keep one array, or name the image 'image'")
        return z["image" if "image" in names else names[0]]


def read_dicom(source: bytes | str, window: tuple[float, float] | None = None) -> np.ndarray:
    """A DICOM image in physical units (stored value x RescaleSlope + RescaleIntercept), (H, W)
    or (H, W, 3), clipped to the window (centre, width) where one is given."""
    pydicom = need("pydicom", "dicom")
    ds = pydicom.dcmread(stream(source))
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise ValueError(f"a DICOM file of {ds.NumberOfFrames} frames: give one image per file")
    arr = ds.pixel_array.astype(np.float32)
    arr = arr * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    if window is not None:
        centre, width = window
        arr = np.clip(arr, centre - width / 2, centre + width / 2)
    return arr


def read_tiff(source: bytes | str, layout: str = "auto") -> np.ndarray:
    tifffile = need("tifffile", "tiff")
    with tifffile.TiffFile(stream(source)) as tif:
        series = tif.series[0]
        return as_chw(series.asarray(), layout, series.axes)


def read_picture(source: bytes | str) -> np.ndarray:
    """Any image Pillow reads, its values as stored (16-bit stays 0-65535), upright."""
    from PIL import Image, ImageOps

    with Image.open(stream(source)) as img:
        img.load()
        return np.asarray(ImageOps.exif_transpose(img))


@dataclass(frozen=True)
class Pixels:
    """How a file's values are read (data.pixels and the keys with it): "8-bit" pictures
    (byol.data.decode) or "full" precision (read_bands): the 0-based bands kept, the layout of a
    3-D array, DICOM's window (centre, width), and each band's (lows, highs) to clip to
    (data.clip, which the run plan sets from data.clip_percentiles)."""
    kind: str = "8-bit"
    bands: tuple[int, ...] | None = None
    layout: str = "auto"
    window: tuple[float, float] | None = None
    clip: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @property
    def full(self) -> bool:
        return self.kind == "full"

    @classmethod
    def of(cls, data: dict) -> "Pixels":
        """From a run's data settings (config.yaml's data section, or a saved reader's): pixels,
        bands, layout, window, clip; "auto" (not decided yet) reads 8-bit pictures."""
        clip = data.get("clip")
        return cls("full" if data.get("pixels") == "full" else "8-bit",
                   tuple(data["bands"]) if data.get("bands") is not None else None, data.get("layout") or "auto",
                   tuple(data["window"]) if data.get("window") is not None else None,
                   (tuple(clip[0]), tuple(clip[1])) if clip is not None else None)

    def settings(self) -> dict:
        """The settings `of` reads back (what checkpoints and exports keep)."""
        return {"pixels": self.kind, "bands": None if self.bands is None else list(self.bands), "layout": self.layout,
                "window": None if self.window is None else list(self.window),
                "clip": None if self.clip is None else [list(self.clip[0]), list(self.clip[1])]}

    def read(self, source: bytes | str) -> np.ndarray:
        """The file as float32 (C, H, W): read_bands with these settings, then the clip."""
        x = read_bands(source, self.layout, self.bands, self.window)
        if self.clip is not None:
            low, high = (np.asarray(v, dtype=np.float32)[:, None, None] for v in self.clip)
            x = np.clip(x, low, high)
        return x

    def image(self, source: bytes | str, channels: int, size: int | None, mode: str = "resize",
              rng: np.random.Generator | None = None) -> torch.Tensor:
        """The file as float32 (C, size, size), as training reads it (fit_bands); a file whose band
        count is not `channels` is refused (ValueError: the file is said and skipped)."""
        x = torch.from_numpy(self.read(source))
        if x.shape[0] != channels:
            raise ValueError(f"it has {x.shape[0]} bands where the data set's images have {channels}: give one set of "
                             "images with one band count (or pick bands with data.bands)")
        return fit_bands(x, size, mode, rng)


def read_bands(source: bytes | str, layout: str = "auto", bands: tuple[int, ...] | None = None,
               window: tuple[float, float] | None = None) -> np.ndarray:
    """The image as float32 (C, H, W) in the data's units (see the module docstring); `bands`:
    the 0-based bands kept, in that order. Raises ValueError (or OSError) for a file that
    cannot be read as one image."""
    kind = kind_of(source)
    if kind == "npy":
        arr = as_chw(np.load(stream(source), allow_pickle=False), layout)
    elif kind == "npz":
        try:
            arr = as_chw(read_npz(source), layout)
        except zipfile.BadZipFile as e:
            raise ValueError(f"a damaged .npz ({e})") from None
    elif kind == "dicom":
        arr = as_chw(read_dicom(source, window), "hwc" if layout == "auto" else layout)
    elif kind == "tiff":
        arr = read_tiff(source, layout)
    else:
        arr = as_chw(read_picture(source), "hwc" if layout == "auto" else layout)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"an array of {arr.dtype}: give real numbers")
    out = arr.astype(np.float32, copy=False)
    if bands is not None:
        if max(bands) >= out.shape[0]:
            raise ValueError(f"data.bands {list(bands)} names band {max(bands)}, but the file has {out.shape[0]} "
                             f"bands (0 to {out.shape[0] - 1})")
        out = out[list(bands)]
    if not np.isfinite(out).all():
        raise ValueError("it holds NaN or infinite values: fill them (e.g. with the band's no-data value) first")
    return np.ascontiguousarray(out)


def band_shape(source: bytes | str, layout: str = "auto") -> tuple[int, int, int]:
    """(C, H, W) of the image as read_bands reads it (before data.bands), from its header where
    the format allows (npy, TIFF, DICOM), else by reading it."""
    kind = kind_of(source)
    if kind == "npy":
        f = stream(source)
        opened = isinstance(f, str)
        fh = open(f, "rb") if opened else f
        try:
            version = np.lib.format.read_magic(fh)
            shape = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0) else
                     np.lib.format.read_array_header_2_0(fh))[0]
        finally:
            if opened:
                fh.close()
        return tuple(as_chw(np.empty(shape, dtype=np.uint8), layout).shape) if len(shape) in (2, 3) else shape
    if kind == "tiff":
        tifffile = need("tifffile", "tiff")
        with tifffile.TiffFile(stream(source)) as tif:
            series = tif.series[0]
            return tuple(as_chw(np.empty(series.shape, dtype=np.uint8), layout, series.axes).shape)
    if kind == "dicom":
        pydicom = need("pydicom", "dicom")
        ds = pydicom.dcmread(stream(source), stop_before_pixels=True)
        return int(getattr(ds, "SamplesPerPixel", 1) or 1), int(ds.Rows), int(ds.Columns)
    return tuple(read_bands(source, layout).shape)


def is_picture(source: bytes | str) -> bool:
    """Whether the file is an 8-bit picture of 1, 3 or 4 channels (gray, RGB, RGBA, palette):
    what the 8-bit path reads (data.pixels 8-bit). Arrays, DICOM, multi-band, 16-bit and float
    images are not."""
    if kind_of(source) in ("npy", "npz", "dicom"):
        return False
    from PIL import Image

    try:
        with Image.open(stream(source)) as img:
            return img.mode in ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr")
    except Image.DecompressionBombError:
        return True  # a picture too large to open: the 8-bit path says so and skips it
    except (OSError, ValueError, SyntaxError):
        return kind_of(source) != "tiff"  # a TIFF Pillow cannot open is multi-band or float: tifffile's


def geo_reference(source: bytes | str) -> dict | None:
    """Where a north-up GeoTIFF lies, from its GeoKeys (tifffile): its coordinate system's EPSG
    code (projected or geographic) where it names one, the pixel size, and the bounds [left,
    bottom, right, top] in that system; None for any other file."""
    if kind_of(source) != "tiff":
        return None
    tifffile = need("tifffile", "tiff")
    with tifffile.TiffFile(stream(source)) as tif:
        geo = tif.geotiff_metadata
        if not geo or "ModelPixelScale" not in geo or "ModelTiepoint" not in geo:
            return None
        series = tif.series[0]
        _, height, width = as_chw(np.empty(series.shape, dtype=np.uint8), "auto", series.axes).shape
    sx, sy = (float(v) for v in geo["ModelPixelScale"][:2])
    i, j, _, x, y = (float(v) for v in geo["ModelTiepoint"][:5])
    left, top = x - i * sx, y + j * sy
    code = geo.get("ProjectedCSTypeGeoKey", geo.get("GeographicTypeGeoKey"))
    return {"crs": f"EPSG:{int(code)}" if code is not None else None, "pixel_size": [sx, sy],
            "bounds": [left, top - height * sy, left + width * sx, top]}


def fit_bands(x: torch.Tensor, size: int | None, mode: str = "resize", rng: np.random.Generator | None = None
              ) -> torch.Tensor:
    """(C, H, W) float -> (C, size, size), as decode.fit_image fits 8-bit pictures, in float and
    unclipped: 'resize': shorter side to `size` (bicubic, antialiased where it shrinks), then the
    centre square; 'crop': a random size x size crop (images smaller than `size` resized up
    first). size None keeps the image as it is."""
    if size is None:
        return x.contiguous()
    _, h, w = x.shape
    if mode == "crop" and min(h, w) >= size:
        rng = rng or np.random.default_rng(int(torch.randint(2**62, (1,))))
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        return x[:, top:top + size, left:left + size].contiguous()
    if min(h, w) != size:
        scale = size / min(h, w)
        new = (max(size, round(h * scale)), max(size, round(w * scale)))
        x = F.interpolate(x[None], size=new, mode="bicubic", antialias=min(h, w) > size, align_corners=False)[0]
        _, h, w = x.shape
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top:top + size, left:left + size].contiguous()


STATS_VALUES = 4096  # pixels sampled from each image for the per-band statistics


@dataclass(frozen=True)
class BandStats:
    """Per-band statistics of a sample of training images, in the data's units (after the DICOM
    window and data.bands): mean, standard deviation, and the percentiles data.clip_percentiles
    asks for (lows, highs) or None; mean and std are of the values clipped to those."""
    images: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None


def band_stats(arrays, percentiles: tuple[float, float] | None = None, seed: int = 0) -> BandStats:
    """BandStats of the (C, H, W) arrays `arrays` yields, from up to STATS_VALUES pixels of each
    (drawn with `seed`). A band with no spread gets std 1 (standardising then only centres it)."""
    rng = np.random.default_rng(seed)
    samples, count = [], 0
    for x in arrays:
        flat = x.reshape(x.shape[0], -1)
        pick = rng.choice(flat.shape[1], min(STATS_VALUES, flat.shape[1]), replace=False)
        samples.append(flat[:, pick].astype(np.float64))
        count += 1
    if not samples:
        raise DataError("no readable image to take per-band statistics from")
    values = np.concatenate(samples, axis=1)
    low = high = None
    if percentiles is not None:
        low, high = (tuple(float(v) for v in np.percentile(values, q, axis=1)) for q in percentiles)
        values = np.clip(values, np.asarray(low)[:, None], np.asarray(high)[:, None])
    std = values.std(axis=1)
    return BandStats(count, tuple(float(v) for v in values.mean(axis=1)),
                     tuple(float(v) if v > 0 else 1.0 for v in std), low, high)
