"""The input pipeline on photographs: source images per second per worker process, for this
project's loaders and for the pipelines people use instead, each compared with the one that
does the same work.

The work, for every pipeline unless its row names a difference: read a JPEG photo, decode it,
draw two random resized crops (area 0.08-1, aspect 3/4-4/3, torchvision's rejection sampling
with its centred fallback), resize each to 224 px (bicubic, antialiased where it shrinks), flip
each with probability 1/2, and collate batches of uint8 views. "decode-*" rows do only the
decode of the same files: the rate every pipeline's workers are bounded by. "jpeg-3-bands" and
"tiff-13-bands" read whole images instead (resized to 224 px): 3-band JPEGs against 13-band
16-bit GeoTIFFs of the same side made from them, read at full precision.

Each measurement runs in a process of its own, with persistent DataLoader workers: the first
batch of each worker (its start-up) is not timed, then batches are timed until --images images,
over as many epochs as that takes. Each is repeated --repeats times (a new process each time);
rows give the mean, the standard deviation and every run, and a ratio whose difference from 1
is inside the two spreads is reported as no difference.

The photos: CIFAR-10 training images (--cifar) upscaled to --size and given multi-scale noise
(a 1/f-like texture, so that JPEG has a photo's detail to code), saved at quality 90; or a
folder of the user's own (--photos). The torchvision, webdataset and lightly pipelines run in
another Python (--peer-python, an environment with them on the same CPU).

    python benchmarks/loader.py --cifar ../shared/data/cifar10 --size 500x375 --images 512 \\
        --workers 1,2 --repeats 3 --peer-python /tmp/vpeer/bin/python --out benchmarks/results/loader.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# An estimate, not a measurement here: the source images/s one H100 would take training ResNet-50
# with BYOL (two 224-px views through the online network forward and backward, and the target
# forward), in bf16. Rows state it as an estimate beside the workers it would need.
GPU_DEMAND_ESTIMATE = 1700
OUTPUT = 224
BOUND = 512  # data.load_size of the imagenet recipe: the plain path's bound, and the cache's longer side

# name -> (what each worker does, the pipeline it does the same work as, the differences from that one)
PIPELINES = {
    "decode-pillow": ("decode only, Pillow, full size", None, []),
    "decode-simplejpeg": ("decode only, simplejpeg (libjpeg-turbo), full size", None, []),
    "torchvision-bicubic": ("torchvision ImageFolder + PIL, RandomResizedCrop(224, bicubic) and a flip per view",
                            None, []),
    "byol-pillow": ("StreamImages (data.large_images: full) with Pillow's decoder: one decode at the DCT scale the "
                    "crops need, both crops cut from it and resized by Pillow (bicubic)", "torchvision-bicubic",
                    ["flips on the training device, not in the workers"]),
    "byol": ("`byol-pillow` with simplejpeg's decoder, as `byol pretrain` runs where the fast-jpeg extra is "
             "installed", "torchvision-bicubic",
             ["flips on the training device, not in the workers", "decoder: simplejpeg, not Pillow"]),
    "byol-device": ("StreamImages (data.large_images: full, data.crop_on: device) with simplejpeg's decoder: one decode "
                    "at the DCT scale the crops need, the photo passed whole with its two boxes; the crops are cut "
                    "and resized on the training device, timed apart (device_ms_per_batch)", "torchvision-bicubic",
                    ["crops resized and flipped on the training device, not in the workers (its cost per batch in "
                     "device_ms_per_batch, measured with this CPU as the device)", "decoder: simplejpeg, not Pillow"]),
    "byol-device-pillow": ("`byol-device` with Pillow's decoder", "torchvision-bicubic",
                           ["crops resized and flipped on the training device, not in the workers (its cost per "
                            "batch in device_ms_per_batch, measured with this CPU as the device)"]),
    "byol-plain": ("the same crops without the fast path: the whole photo decoded by Pillow, its shorter side shrunk "
                   "to 512, both crops resized by torch (bicubic)", "torchvision-bicubic",
                   ["flips on the training device, not in the workers",
                    "crops from the photo shrunk to 512 px on its shorter side"]),
    "torchvision": ("`torchvision-bicubic` resizing bilinear, torchvision's default", None, []),
    "byol-bilinear": ("`byol-pillow` resizing bilinear", "torchvision",
                      ["flips on the training device, not in the workers"]),
    "torchvision-bicubic-cache": ("`torchvision-bicubic` on a `byol cache --max-side 512` copy of the folder", None,
                                  []),
    "byol-cache": ("`byol-pillow` on the same `byol cache --max-side 512` copy", "torchvision-bicubic-cache",
                   ["flips on the training device, not in the workers"]),
    "webdataset": ("webdataset's WebDataset + PIL on shards of the photos, RandomResizedCrop(224, bicubic) and a "
                   "flip per view", None, []),
    "byol-shards": ("`byol-pillow` reading the same shards (ShardStream, as --data.dataset shards streams them)",
                    "webdataset", ["flips on the training device, not in the workers"]),
    "jpeg-3-bands": ("StreamImages reading the JPEG photos (8-bit RGB) resized whole: shorter side to 224 px, centre "
                     "square (data.large_images: resize)", None, []),
    "tiff-13-bands": ("StreamImages reading 13-band 16-bit GeoTIFFs of the same side at full precision (data.pixels "
                      "full), resized whole the same way", "jpeg-3-bands",
                      ["13 bands of 16-bit values (uncompressed GeoTIFF: 26 bytes a pixel) against 3 of 8 bits (JPEG "
                       "q90)", "resized in float by torch, not in 8 bits by Pillow"]),
    "lightly-byol": ("lightly's BYOLTransform as its documentation runs it: crops and every augmentation (colour, "
                     "blur, solarize) on the CPU", "torchvision-bicubic",
                     ["colour jitter, grayscale, blur and solarization in the workers too"]),
}
PEERS = ("torchvision-bicubic", "torchvision", "torchvision-bicubic-cache", "webdataset", "lightly-byol")
SHARDED = ("byol-shards", "webdataset")  # read the folder's shards, not the folder
CACHED = ("byol-cache", "torchvision-bicubic-cache")  # read the cache, not the folder
BANDS = ("tiff-13-bands",)  # read the 13-band GeoTIFFs made from the photos, not the photos
DECODERS = {"decode-pillow": "pillow", "decode-simplejpeg": "simplejpeg"}
DEVICE_CROPS = ("byol-device", "byol-device-pillow")  # the device's work is timed after the workers'
BARE_DECODE = {"byol-device": "decode-simplejpeg", "byol-device-pillow": "decode-pillow", "byol": "decode-simplejpeg",
               "byol-pillow": "decode-pillow"}  # the bare decode of the same files with the same decoder


def photos_folder(args, tmp: Path, program: str) -> str:
    """The folder of photos a benchmark reads: --photos, else --images photos made from --cifar's
    images at --size under tmp."""
    if args.photos:
        return args.photos
    if not os.path.exists(os.path.join(args.cifar or "", "train.tar.gz")):
        sys.exit(f"{program}: {args.cifar}/train.tar.gz not found; pass --cifar DIR or --photos DIR")
    width, height = (int(v) for v in args.size.lower().split("x"))
    write_photos(tmp / "photos", args.images, width, height, args.cifar)
    return str(tmp / "photos")


def write_photos(folder: Path, n: int, width: int, height: int, cifar: str | None, seed: int = 0) -> None:
    """n photo-like JPEGs (quality 90) in 10 class folders: CIFAR-10 images upscaled (bicubic)
    plus noise at cell sizes 1-256 px with amplitude growing with the cell (a 1/f-like
    spectrum, as natural images have); without CIFAR, smooth random colour fields instead."""
    import io
    import tarfile

    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    sources = []
    if cifar:
        with tarfile.open(os.path.join(cifar, "train.tar.gz")) as tar:
            for m in tar:
                if m.isfile() and m.name.endswith(".jpg"):
                    sources.append(np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")))
                    if len(sources) >= n:
                        break
    for i in range(n):
        base = sources[i] if sources else rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        x = torch.tensor(base).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)
        for cell in (1, 2, 4, 16, 64, 256):
            grid = torch.randn(1, 3, height // cell + 2, width // cell + 2)
            x += 8.0 * cell ** 0.35 * F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        arr = x[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()
        (folder / f"c{i % 10}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(folder / f"c{i % 10}" / f"{i:05d}.jpg", quality=90)


def write_band_tiffs(photos: Path, folder: Path) -> None:
    """A 13-band 16-bit GeoTIFF (uncompressed, north-up, 10 m pixels) for each photo of
    `photos`, same side and class folder: bands 1-3 the photo's RGB scaled to 0-10,000 (a
    Sentinel-2 tile's reflectance range), the other 10 blends of them with noise."""
    import numpy as np
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    mix = rng.uniform(0.0, 1.0, (10, 3))
    geo = [(33550, "d", 3, (10.0, 10.0, 0.0), True), (33922, "d", 6, (0, 0, 0, 500000.0, 4600000.0, 0), True),
           (34735, "H", 8, (1, 1, 0, 1, 1024, 0, 1, 1), True)]
    for path in sorted(photos.rglob("*.jpg")):
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) * (10_000 / 255)
        others = np.einsum("kc,chw->khw", mix / mix.sum(1, keepdims=True), rgb)
        cube = np.concatenate([rgb, others + rng.normal(0, 50, others.shape)]).clip(0, 10_000).astype(np.uint16)
        target = folder / path.relative_to(photos).with_suffix(".tif")
        target.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(target, cube, photometric="minisblack", extratags=geo)


def crops():
    """The augmentation settings of every byol pipeline here: 224-px views, the paper's crop
    ranges, torchvision's rejection sampling and bicubic resizing (the work torchvision does)."""
    from byol.core.augment import AugmentConfig

    return AugmentConfig(size=OUTPUT, crop_sampling="rejection", interpolation="bicubic")


def plain_views(path: str, c) -> tuple:
    """The crops without the fast path: the whole photo decoded by Pillow, its shorter side
    shrunk to BOUND, each view's box drawn and resized by torch (core.augment.crop_from_full)."""
    import numpy as np
    import torch
    from PIL import Image

    from byol.core.augment import chw, crop_from_full
    from byol.data.decode import open_image

    img = open_image(path, 3)
    w, h = img.size
    if min(w, h) > BOUND:
        s = BOUND / min(w, h)
        img = img.resize((max(BOUND, round(w * s)), max(BOUND, round(h * s))), Image.BICUBIC)
    whole = torch.from_numpy(chw(np.asarray(img)))
    return tuple(crop_from_full(whole, v, c.size, c.interpolation, c.crop_sampling)[0] for v in (c.view1, c.view2))


class Views:
    """A map-style data set of one of this project's pipelines that StreamImages does not run
    as it is: the plain path, bilinear resizing, or the bare decode."""

    def __init__(self, folder: str, pipeline: str):
        from byol.data.listing import list_images

        self.images, self.pipeline, self.crops = list_images(folder), pipeline, crops()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        import torch

        from byol.data.batch import Batch
        from byol.data.decode import cut_views, decode, read_header

        path = os.path.join(self.images.root, self.images.items[i])
        p, c = self.pipeline, self.crops
        if p in DECODERS:  # the decoded array, one pixel of it passed on: the decode's cost alone
            image = decode(read_header(path), path, 3, 1.0, DECODERS[p], as_array=True)
            return Batch(images=torch.from_numpy(image[:1, :1].copy()), labels=self.images.labels[i])
        if p == "byol-plain":
            v1, v2 = plain_views(path, c)
        else:
            (v1, v2), _ = cut_views(path, 3, (c.view1, c.view2), c.size, BOUND, "bilinear", c.crop_sampling, "pillow")
        return Batch(images=v1, partners=v2, labels=self.images.labels[i])


def dataset(pipeline: str, folder: str):
    """(data set, collate function) of a pipeline."""
    if pipeline in ("byol", "byol-pillow", "byol-cache", "byol-shards", *DEVICE_CROPS):
        from byol.data.batch import collate

        decoder = "simplejpeg" if pipeline in ("byol", "byol-device") else "pillow"
        if pipeline == "byol-shards":
            from byol.data.shards import ShardStream

            return ShardStream(folder, BOUND, 3, "full", crops=crops(), decoder=decoder), collate
        from byol.data.image_sets import StreamImages
        from byol.data.listing import list_images

        return StreamImages(list_images(folder), BOUND, 3, "full", crops=crops(), decoder=decoder,
                            device_crops=pipeline in DEVICE_CROPS), collate
    if pipeline.startswith(("byol-", "decode-")):
        from byol.data.batch import collate

        return Views(folder, pipeline), collate
    if pipeline in ("jpeg-3-bands", *BANDS):
        from byol.data.bands import Pixels
        from byol.data.batch import collate
        from byol.data.image_sets import StreamImages
        from byol.data.listing import list_images

        full = pipeline in BANDS
        return StreamImages(list_images(folder), OUTPUT, 13 if full else 3, "resize", decoder="pillow",
                            pixels=Pixels("full") if full else None), collate
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    resize = T.InterpolationMode.BILINEAR if pipeline == "torchvision" else T.InterpolationMode.BICUBIC
    view = T.Compose([T.RandomResizedCrop(OUTPUT, interpolation=resize), T.RandomHorizontalFlip(), T.PILToTensor()])
    if pipeline.startswith("torchvision"):
        return ImageFolder(folder, transform=lambda img: (view(img), view(img))), None
    if pipeline == "webdataset":
        import webdataset as wds

        shards = sorted(str(p) for p in Path(folder).glob("*.tar"))
        return (wds.WebDataset(shards, shardshuffle=False, workersplitter=wds.split_by_worker).shuffle(1000)
                .decode("pil").to_tuple("jpg", "cls").map(lambda s: (view(s[0]), view(s[0]), int(s[1])))), None
    from lightly.transforms import BYOLTransform

    return ImageFolder(folder, transform=BYOLTransform()), None


def measure(pipeline: str, folder: str, workers: int, images: int, batch: int) -> dict:
    """Images/s of one pipeline with `workers` persistent worker processes: each worker's first
    batch (its start-up) untimed, then batches until `images` images, across epochs."""
    import torch

    data, collate = dataset(pipeline, folder)
    iterable = isinstance(data, torch.utils.data.IterableDataset)  # a stream shuffles itself
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=not iterable, num_workers=workers,
                                         collate_fn=collate, drop_last=True, persistent_workers=workers > 0)
    warm, done, start, kept = max(1, workers), 0, None, []
    while done < images:
        for b in loader:
            if warm:
                warm -= 1
                if not warm:
                    start = time.perf_counter()  # every worker has delivered its first batch
                continue
            done += batch
            if pipeline in DEVICE_CROPS and len(kept) < DEVICE_BATCHES:
                kept.append(b)
            if done >= images:
                break
    seconds = time.perf_counter() - start
    import PIL

    row = {"images_per_s": round(done / seconds, 1), "timed_images": done, "seconds": round(seconds, 2),
           "pillow": PIL.__version__, "torch": torch.__version__}
    if kept:
        del loader  # its workers stop before the device's work is timed
        row.update(device_side(kept))
    try:
        import simplejpeg  # noqa: F401

        row["simplejpeg"] = True
    except ImportError:
        row["simplejpeg"] = False
    return row


DEVICE_BATCHES = 4  # batches whose crops the device cuts, timed after the workers' measurement


def device_side(batches: list) -> dict:
    """The training device's share of the device-crop path, with this CPU standing in for the
    device (all its threads, nothing else running): both views' crops cut and resized, flipped
    (BatchAugment.from_boxes with the colour operations off: the same work as the workers' path
    up to the flips), per batch; and the bytes each image takes over the host-to-device copy (the
    padded canvas, against the two 224-px uint8 views the workers' path sends)."""
    import torch

    from byol.core.augment import AugmentConfig, BatchAugment, ViewConfig

    plain = ViewConfig(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0, blur_p=0.0,
                       solarize_p=0.0)
    c = crops()
    augment = BatchAugment(AugmentConfig(size=c.size, view1=plain, view2=plain, interpolation=c.interpolation),
                           cropped=True)
    augment.from_boxes(batches[0].images, batches[0].extents, batches[0].boxes)  # warm
    times = []
    for b in batches:
        start = time.perf_counter()
        augment.from_boxes(b.images, b.extents, b.boxes)
        times.append(time.perf_counter() - start)
    per_batch = statistics.fmean(times)
    n = len(batches[0])
    canvas = statistics.fmean(b.images.numel() / len(b) for b in batches)
    photo = statistics.fmean(float((b.extents[:, 0] * b.extents[:, 1]).float().mean()) * 3 for b in batches)
    return {"device": f"cpu ({torch.get_num_threads()} threads) standing in for the training device",
            "device_ms_per_batch": round(1000 * per_batch, 1), "device_ms_per_batch_sd": round(1000 * spread(times), 1),
            "device_images_per_s": round(n / per_batch, 1), "device_batch": n,
            "transfer_bytes_per_image": round(canvas), "decoded_bytes_per_image": round(photo),
            "transfer_bytes_per_image_workers_path": 2 * 3 * OUTPUT * OUTPUT}


def run_child(python: str, pipeline: str, folder: str, workers: int, images: int, batch: int) -> dict | None:
    """One measurement in a process of its own (its workers and memory its own); None if the
    pipeline is not available in that Python (said on stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([python, __file__, "--child", pipeline, "--photos", folder, "--workers", str(workers),
                           "--images", str(images), "--batch", str(batch)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"loader: {pipeline} with {workers} workers did not run: {tail}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> float:
    """The sample standard deviation (0 for a single value)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def ratio(a: dict, b: dict) -> str:
    """a's per-worker rate over b's, with the words "no difference" where it is inside the two
    measurements' spreads (their relative standard deviations added)."""
    r = a["per_worker"] / b["per_worker"]
    within = a["images_per_s_sd"] / a["images_per_s"] + b["images_per_s_sd"] / b["images_per_s"]
    return f"{r:.2f}x" + (" (no difference: within the spread)" if abs(r - 1) <= within else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", help="folder with CIFAR-10's train.tar.gz: the photos are made from its images")
    p.add_argument("--photos", help="a folder of your own JPEG photos (class sub-folders) instead")
    p.add_argument("--size", default="500x375", help="WIDTHxHEIGHT of the made photos (500x375: ImageNet's typical)")
    p.add_argument("--images", type=int, default=512, help="photos made, and images timed per measurement")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--repeats", type=int, default=3, help="measurements of each pipeline and worker count")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--pipelines", default=",".join(PIPELINES))
    p.add_argument("--peer-python", help="the Python of an environment with torchvision, webdataset and lightly")
    p.add_argument("--out", help="append the rows to this JSONL file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.photos, int(args.workers), args.images, args.batch)))
        return 0
    if not (args.cifar or args.photos):
        p.error("give --cifar DIR (photos made from CIFAR-10) or --photos DIR")
    unknown = [name for name in args.pipelines.split(",") if name not in PIPELINES]
    if unknown:
        p.error(f"unknown pipeline {unknown[0]!r}; choose from {', '.join(PIPELINES)}")
    from bench import commit, cpu_kind, emit

    from byol.data.cache import write_cache
    from byol.data.shards import write_shards
    from byol.training.facts import usable_cores

    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = photos_folder(args, Path(tmp), "loader")
        files = [f for f in Path(folder).rglob("*") if f.suffix.lower() in (".jpg", ".jpeg")]
        kilobytes = round(sum(f.stat().st_size for f in files) / max(1, len(files)) / 1000, 1)  # mean file size
        cached, sharded, prepared = str(Path(tmp) / "cache"), str(Path(tmp) / "shards"), {}
        banded = str(Path(tmp) / "bands")
        for pipeline in args.pipelines.split(","):
            python = args.peer_python if pipeline in PEERS else sys.executable
            if python is None:
                print(f"loader: {pipeline} needs --peer-python (an environment with torchvision, webdataset and "
                      "lightly)", file=sys.stderr)
                continue
            if pipeline in CACHED and not os.path.exists(cached):
                start = time.perf_counter()
                write_cache(folder, cached, BOUND, threads=1)
                prepared["cache"] = round(time.perf_counter() - start, 2)
            if pipeline in SHARDED and not os.path.exists(sharded):  # 4 shards: 1, 2 or 4 workers split them evenly
                write_shards(folder, sharded, shard_size=max(1, -(-len(files) // 4)))
            if pipeline in BANDS and not os.path.exists(banded):
                write_band_tiffs(Path(folder), Path(banded))
            source = (cached if pipeline in CACHED else sharded if pipeline in SHARDED else banded if pipeline in BANDS
                      else folder)
            what, compared_with, differences = PIPELINES[pipeline]
            for workers in (int(w) for w in args.workers.split(",")):
                load = os.getloadavg()
                runs = [run_child(python, pipeline, source, workers, args.images, args.batch)
                        for _ in range(args.repeats)]
                if any(r is None for r in runs):
                    continue
                rates = [r["images_per_s"] for r in runs]
                mean = statistics.fmean(rates)
                row = {"benchmark": "loader", "pipeline": pipeline, "workers": workers, "repeats": len(runs),
                       "what": what, "same_work_as": compared_with, "differences": differences,
                       "bare_decode": BARE_DECODE.get(pipeline),
                       "photos": "own" if args.photos else f"CIFAR-10 upscaled to {width}x{height}, JPEG q90",
                       "photo_size": args.size if not args.photos else None, "photo_kB": kilobytes, "output": OUTPUT,
                       **{k: v for k, v in runs[0].items() if k not in ("images_per_s", "seconds")},
                       "images_per_s": round(mean, 1), "images_per_s_sd": round(spread(rates), 1),
                       "images_per_s_runs": rates, "per_worker": round(mean / workers, 1),
                       "gpu_demand_estimate": GPU_DEMAND_ESTIMATE,
                       "workers_for_gpu_demand_estimate": round(GPU_DEMAND_ESTIMATE / (mean / workers), 1),
                       "cpu_kind": cpu_kind(), "cores": usable_cores(),
                       "load_average_before": [round(v, 2) for v in load],
                       "load_average_after": [round(v, 2) for v in os.getloadavg()],
                       "commit": commit(), "command": shlex.join(["python", "benchmarks/loader.py", *(argv or sys.argv[1:])])}
                if pipeline in CACHED:  # the copy is made once, before any epoch: its time is not in images/s
                    row["cache_seconds"] = prepared.get("cache")
                if pipeline in BANDS:
                    tiffs = list(Path(banded).rglob("*.tif"))
                    row["file_kB"] = round(sum(f.stat().st_size for f in tiffs) / len(tiffs) / 1000, 1)
                emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
