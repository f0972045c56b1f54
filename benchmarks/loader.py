"""The input pipeline on photographs: source images per second per worker process, for this
project's loader (and each lever of its fast path) and for the pipelines people use instead.

Each pipeline turns a folder of JPEG photos into batches of two 224-px uint8 views, as
training does (decode, each view's random resized crop of scale 0.08-1 and aspect 3/4-4/3,
resize, collation) with 1, 2, ... DataLoader worker processes, each run in a process of its
own; the first batch (worker start-up) is not timed. Rows: images/s, per worker, and the
workers one GPU would need at 1,700 source images/s (one H100 training ResNet-50 with BYOL's
two views in bf16; see the loader issue's arithmetic).

The pipelines are named in PIPELINES, each with what its workers do. "Same work" is torchvision's
RandomResizedCrop with bicubic resizing (the paper's and this project's interpolation, and
solo-learn's); torchvision's default is bilinear, which costs less per pixel.

The photos: CIFAR-10 training images (--cifar) upscaled to --size and given multi-scale noise
(a 1/f-like texture, so that JPEG has a photo's detail to code), saved at quality 90; or a
folder of the user's own (--photos). The torchvision and lightly pipelines run in another
Python (--peer-python, an environment with torchvision and lightly on the same CPU).

    python benchmarks/loader.py --cifar ../shared/data/cifar10 --size 500x375 --images 512 \\
        --workers 1,2 --peer-python /tmp/vpeer/bin/python --out benchmarks/results/loader.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

GPU_DEMAND = 1700  # source images/s one H100 consumes training ResNet-50 with BYOL's two views in bf16
OUTPUT = 224
BOUND = 512  # data.load_size of the imagenet recipe: the plain path's bound, and the cache's longer side
PIPELINES = {  # name -> what each worker does for one photo (the tables' second column)
    "byol": "StreamImages (data.large_images: full), as `byol pretrain` streams photos: one decode at the scale "
            "the crops need, both crops cut from it and resized by Pillow (bicubic)",
    "byol-plain": "the same crops without the fast path: the whole photo decoded by Pillow, its shorter side "
                  "shrunk to 512, both crops resized by torch (bicubic)",
    "byol-decode-per-view": "the fast path decoding the file once per view",
    "byol-no-draft": "one full-resolution decode, both crops resized by Pillow (bicubic)",
    "byol-pillow": "+ DCT-domain reduced decoding, Pillow's decoder",
    "byol-simplejpeg": "+ simplejpeg's decoder (the fast-jpeg extra)",
    "byol-bilinear": "`byol` resizing bilinear, as torchvision's default does",
    "byol-cache": "`byol` on a `byol cache --max-side 512` copy of the folder",
    "byol-shards": "`byol` reading the same photos from WebDataset tar shards written by `byol shards` "
                   "(ShardStream, as `--data.dataset shards` streams them)",
    "torchvision-bicubic": "torchvision ImageFolder + PIL, RandomResizedCrop(224, bicubic) and a flip per view: "
                           "the same work as `byol`",
    "torchvision": "the same with torchvision's default bilinear resize: the same work as `byol-bilinear`",
    "webdataset": "webdataset's WebDataset + PIL on the same shards, RandomResizedCrop(224, bicubic) and a flip per "
                  "view: the same work as `byol-shards`",
    "lightly-byol": "lightly's BYOLTransform as its documentation runs it: crops and every augmentation "
                    "(colour, blur, solarize) on the CPU",
}
PEERS = ("torchvision-bicubic", "torchvision", "webdataset", "lightly-byol")
SHARDED = ("byol-shards", "webdataset")  # read the folder's shards, not the folder
OURS = tuple(p for p in PIPELINES if p not in PEERS)


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


def plain_views(path: str, crops) -> tuple:
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
    return tuple(crop_from_full(whole, v, crops.size, crops.interpolation, crops.crop_sampling)[0]
                 for v in (crops.view1, crops.view2))


class Views:
    """A map-style data set of two uint8 views per photo, by one of this project's pipelines."""

    def __init__(self, folder: str, pipeline: str):
        from byol.config import load_config
        from byol.data.images import list_images

        self.images, self.pipeline = list_images(folder), pipeline
        self.crops = load_config("imagenet").augment  # 224-px views, DeepMind's crop sampling

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from byol.data.batch import Batch
        from byol.data.decode import cut_views

        path = os.path.join(self.images.root, self.images.items[i])
        p, c = self.pipeline, self.crops
        if p == "byol-plain":
            v1, v2 = plain_views(path, c)
        elif p == "byol-decode-per-view":
            (v1,), _ = cut_views(path, 3, (c.view1,), c.size, BOUND, c.interpolation, c.crop_sampling, "pillow")
            (v2,), _ = cut_views(path, 3, (c.view2,), c.size, BOUND, c.interpolation, c.crop_sampling, "pillow")
        else:
            decoder = "simplejpeg" if p == "byol-simplejpeg" else "auto" if p == "byol-bilinear" else "pillow"
            interpolation = "bilinear" if p == "byol-bilinear" else c.interpolation
            (v1, v2), _ = cut_views(path, 3, (c.view1, c.view2), c.size, BOUND, interpolation, c.crop_sampling,
                                    decoder, reduce=p != "byol-no-draft")
        return Batch(images=v1, partners=v2, labels=self.images.labels[i])


def dataset(pipeline: str, folder: str):
    """(data set, collate function) of a pipeline."""
    if pipeline == "byol-shards":
        from byol.config import load_config
        from byol.data.batch import collate
        from byol.data.shards import ShardStream

        return ShardStream(folder, BOUND, 3, "full", crops=load_config("imagenet").augment), collate
    if pipeline in ("byol", "byol-cache"):
        from byol.config import load_config
        from byol.data.batch import collate
        from byol.data.images import StreamImages, list_images

        crops = load_config("imagenet").augment
        return StreamImages(list_images(folder), BOUND, 3, "full", crops=crops), collate
    if pipeline.startswith("byol-"):
        from byol.data.batch import collate

        return Views(folder, pipeline), collate
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
    """Images/s of one pipeline with `workers` worker processes: the batches after the first."""
    import torch

    data, collate = dataset(pipeline, folder)
    iterable = isinstance(data, torch.utils.data.IterableDataset)  # a stream shuffles itself
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=not iterable, num_workers=workers,
                                         collate_fn=collate, drop_last=True, persistent_workers=False)
    done, start = 0, None
    while done < images:
        for b in loader:
            if start is None:
                start = time.perf_counter()  # after the first batch: the workers are up
                continue
            done += batch
            if done >= images:
                break
    seconds = time.perf_counter() - start
    import PIL

    row = {"images_per_s": round(done / seconds, 1), "timed_images": done, "seconds": round(seconds, 2),
           "pillow": PIL.__version__, "torch": torch.__version__}
    try:
        import simplejpeg  # noqa: F401

        row["simplejpeg"] = True
    except ImportError:
        row["simplejpeg"] = False
    return row


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", help="folder with CIFAR-10's train.tar.gz: the photos are made from its images")
    p.add_argument("--photos", help="a folder of your own JPEG photos (class sub-folders) instead")
    p.add_argument("--size", default="500x375", help="WIDTHxHEIGHT of the made photos (500x375: ImageNet's typical)")
    p.add_argument("--images", type=int, default=512, help="photos made, and images timed per measurement")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--pipelines", default=",".join(PIPELINES))
    p.add_argument("--peer-python", help="the Python of an environment with torchvision and lightly")
    p.add_argument("--out", help="append the rows to this JSONL file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.photos, int(args.workers), args.images, args.batch)))
        return 0
    if not (args.cifar or args.photos):
        p.error("give --cifar DIR (photos made from CIFAR-10) or --photos DIR")
    from bench import commit, cpu_kind, emit

    from byol.data.cache import write_cache
    from byol.data.shards import write_shards
    from byol.training.data import usable_cores

    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.photos or str(Path(tmp) / "photos")
        if not args.photos:
            if not os.path.exists(os.path.join(args.cifar, "train.tar.gz")):
                sys.exit(f"loader: {args.cifar}/train.tar.gz not found; pass --cifar DIR or --photos DIR")
            write_photos(Path(folder), args.images, width, height, args.cifar)
        files = [f for f in Path(folder).rglob("*") if f.suffix.lower() in (".jpg", ".jpeg")]
        kilobytes = round(sum(f.stat().st_size for f in files) / max(1, len(files)) / 1000, 1)  # mean file size
        cached, sharded = str(Path(tmp) / "cache"), str(Path(tmp) / "shards")
        for pipeline in args.pipelines.split(","):
            python = args.peer_python if pipeline in PEERS else sys.executable
            if python is None:
                print(f"loader: {pipeline} needs --peer-python (an environment with torchvision and lightly)",
                      file=sys.stderr)
                continue
            if pipeline == "byol-cache" and not os.path.exists(cached):
                write_cache(folder, cached, BOUND)
            if pipeline in SHARDED and not os.path.exists(sharded):  # 4 shards: 1, 2 or 4 workers split them evenly
                write_shards(folder, sharded, shard_size=max(1, -(-len(files) // 4)))
            for workers in (int(w) for w in args.workers.split(",")):
                load = os.getloadavg()
                source = cached if pipeline == "byol-cache" else sharded if pipeline in SHARDED else folder
                row = run_child(python, pipeline, source, workers,
                                args.images, args.batch)
                if row is None:
                    continue
                per_worker = row["images_per_s"] / workers
                row = {"benchmark": "loader", "pipeline": pipeline, "workers": workers,
                       "photos": "own" if args.photos else f"CIFAR-10 upscaled to {width}x{height}, JPEG q90",
                       "photo_size": args.size if not args.photos else None, "photo_kB": kilobytes, "output": OUTPUT,
                       **row,
                       "per_worker": round(per_worker, 1),
                       "workers_for_one_gpu": round(GPU_DEMAND / per_worker, 1),
                       "cpu_kind": cpu_kind(), "cores": usable_cores(),
                       "load_average_before": [round(v, 2) for v in load],
                       "load_average_after": [round(v, 2) for v in os.getloadavg()],
                       "commit": commit(), "command": shlex.join(["python", "benchmarks/loader.py", *(argv or sys.argv[1:])])}
                emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
