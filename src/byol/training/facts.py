"""What a run's decisions need to know of the world, each read once, before anything is decided:
the launch (how many training processes, which one this is), the hardware, the named weights'
own description, and the training data (its images listed and split, their typical size and
number, whether they are grayscale, whether the folder is a resized cache).

    launch = read_launch()                 # the environment a launcher set, read here and nowhere else
    facts = read_facts(cfg, launch)        # a value: printable (as_dict), with no Config inside

`byol pretrain`, its `--print-config`, `byol preview` and the Python `pretrain()` all read them
through here and decide from them with byol.training.plan.decide.
"""
from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass, field

import torch

from byol.config import Config
from byol.data.image_sets import GRAYSCALE_SAMPLE, decode_to_memory, looks_grayscale
from byol.data.listing import DECODE_ERRORS, ImageList, list_images
from byol.data.splits import first_per_class, random_subset, split_held_out

MEMORY_LIMIT_IMAGES = 300_000  # below it (and not large_images full), a folder's images are decoded into memory
SIZE_SAMPLE = 64  # images whose headers are read to find the typical size
GRAYSCALE_SIDE = 16  # px: the grayscale sample is decoded this small (equal channels stay equal at any size)
NAMED_SIZES = {"cifar10": 32, "cifar100": 32, "stl10": 96, "mnist": 28, "emnist": 28}


@dataclass(frozen=True)
class Launch:
    """The training processes as their launcher set them up (torchrun, Lightning's own launcher,
    SLURM), or nothing set: a process started by hand. Raw values; which rank this process is,
    and how many train, the plan decides with train.devices and train.num_nodes."""
    launcher: str  # "torchrun" (RANK), "lightning" (LOCAL_RANK, NODE_RANK), "slurm", "unknown" (WORLD_SIZE alone), "none"
    world_size: int | None = None  # WORLD_SIZE: the processes the launcher started, all nodes
    rank: int | None = None  # this process's global rank, where the launcher says it
    local_rank: int | None = None
    local_world_size: int | None = None  # the processes on this machine
    node_rank: int | None = None


def read_launch(env=None) -> Launch:
    """The launch, from the environment variables torchrun, Lightning and SLURM set; the one
    place that reads them. WORLD_SIZE, where a launcher sets it, is the world of every kind."""
    env = os.environ if env is None else env

    def number(name: str) -> int | None:
        return int(env[name]) if env.get(name, "").strip().lstrip("-").isdigit() else None

    world = number("WORLD_SIZE")
    if "RANK" in env:
        return Launch("torchrun", world, number("RANK"), number("LOCAL_RANK"), number("LOCAL_WORLD_SIZE"),
                      number("GROUP_RANK") if "GROUP_RANK" in env else number("NODE_RANK"))
    if "LOCAL_RANK" in env:
        return Launch("lightning", world, None, number("LOCAL_RANK"), number("LOCAL_WORLD_SIZE"),
                      number("NODE_RANK") if "NODE_RANK" in env else number("GROUP_RANK"))
    if (number("SLURM_NTASKS") or 1) > 1:
        return Launch("slurm", world, number("SLURM_PROCID"), number("SLURM_LOCALID"),
                      number("SLURM_NTASKS_PER_NODE"), number("SLURM_NODEID"))
    return Launch("none" if world is None else "unknown", world)


@dataclass(frozen=True)
class Hardware:
    """What the decisions need of the machine: CUDA, bf16 in hardware, cores and threads."""
    cuda: bool
    cuda_devices: int
    cuda_bf16: bool
    gpu: str | None  # the first GPU's name
    cpu: str  # the processor's name
    cpu_kind: str  # "AVX-512 BF16" (or AMX), "AVX2 only", or what else it has
    cpu_bf16: bool  # AVX-512 BF16 or AMX: bf16 matrices in hardware
    cpu_bf16_forced: str | None  # BYOL_CPU_BF16 ("1" or "0") where the environment sets it
    cores: int  # the cores this process may run on (its affinity mask)
    threads: int  # torch's intra-op threads


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, as a cluster's scheduler sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_bf16_hardware() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX-512 BF16 or AMX); elsewhere
    bf16 is emulated and slower than fp32."""
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or
                getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def cpu_name() -> tuple[str, str]:
    """(the processor's model name, its kind as the benchmarks name it)."""
    name, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name in ("", platform.machine()):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    kind = ("AMX" if " amx_tile" in flags else "AVX-512 BF16" if " avx512_bf16" in flags else
            "AVX2 only" if " avx2" in flags else (platform.machine() or "unknown"))
    return name, kind


def read_hardware() -> Hardware:
    cuda = torch.cuda.is_available()
    name, kind = cpu_name()
    forced = os.environ.get("BYOL_CPU_BF16")
    return Hardware(cuda=cuda, cuda_devices=torch.cuda.device_count() if cuda else 0,
                    cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
                    gpu=torch.cuda.get_device_name(0) if cuda else None, cpu=name, cpu_kind=kind,
                    cpu_bf16=cpu_bf16_hardware(), cpu_bf16_forced=forced if forced in ("0", "1") else None,
                    cores=usable_cores(), threads=torch.get_num_threads())


@dataclass(frozen=True)
class Weights:
    """model.init_weights as found: a file, or named published weights fetched into (or read
    from) their cache, with what their own description says (byol.pretrained.card)."""
    source: str
    path: str
    named: bool
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalization_known: bool = False
    normalization_said: str = ""
    backbone: str | None = None
    backbone_args: dict | None = None


def read_weights(source: str) -> Weights | None:
    """The weights model.init_weights names, checked there (a regular file, or named weights
    fetched: a failed download is one line before any work); None without any."""
    from pathlib import Path

    from byol import pretrained
    from byol.checkpoint import check_weights_file

    if not source:
        return None
    if not pretrained.is_named(source):
        check_weights_file(Path(source))
        return Weights(source, source, False)
    path = pretrained.fetch(source)
    card = pretrained.card(source, path)
    return Weights(source, str(path), True, card.mean, card.std, card.known, card.said, card.backbone,
                   card.backbone_args)


@dataclass(frozen=True)
class DataFacts:
    """The training data as read before anything is built: how many images a run trains on, the
    typical shorter side, whether they are grayscale, a cache's marker; for a folder its images
    listed and split (kept for building, left out of as_dict)."""
    source: str  # data.dataset
    path: str
    train_images: int | None  # about how many images the run trains on; None where it cannot be told
    typical_side: int | None  # the median shorter side; None where it cannot be told cheaply
    grayscale: bool  # the data-aware decision's input: one channel, or RGB whose channels are equal
    grayscale_from: str  # how it was told
    in_memory: bool | None  # a folder's images decoded into memory (None: not a folder)
    labeled: bool
    cache: dict | None = None  # byol cache's marker, where data.path is a resized copy
    left_out: int = 0  # image files listed and left out (not regular files, stray top-level images)
    images: ImageList | None = field(default=None, repr=False, compare=False)  # a folder's training images
    held: ImageList | None = field(default=None, repr=False, compare=False)  # its held-out images


@dataclass(frozen=True)
class Facts:
    """Everything a run's decisions read of the world (see the module docstring), and the
    package's measurements of how many steps similar data needed (byol.training.budget)."""
    data: DataFacts
    weights: Weights | None
    launch: Launch
    hardware: Hardware
    measurements: tuple = field(default=(), repr=False)  # budget.json's entries

    def as_dict(self) -> dict:
        """The facts as plain values (what plan.json keeps), without the image lists."""
        out = asdict(self)
        for key in ("images", "held"):
            out["data"].pop(key, None)
        out.pop("measurements")
        return out


def read_facts(cfg: Config, launch: Launch | None = None) -> Facts:
    """The facts of the run `cfg` asks for (see Facts); the launch as read_launch found it."""
    from byol.training.budget import measured

    return Facts(read_data(cfg), read_weights(cfg.model.init_weights), launch or read_launch(), read_hardware(),
                 tuple(measured()))


def read_data(cfg: Config) -> DataFacts:
    """DataFacts of cfg.data, by source."""
    d = cfg.data
    if not d.path:
        from byol.config import ConfigError

        raise ConfigError("data.path is not set: give the folder or .tar of training images")
    if d.dataset == "folder":
        return folder_facts(cfg)
    if d.dataset == "shards":
        from byol.data.shards import read_index

        total = sum(s["count"] for s in read_index(d.path)["shards"])
        return DataFacts("shards", d.path, total, None, d.channels == 1, "data.channels", None,
                         bool(read_index(d.path).get("classes")))
    if d.dataset == "video":
        from byol.data.image_sets import VideoFramePairs

        frames = VideoFramePairs(d.path, d.image_size, d.max_frame_gap, d.channels).frames
        return DataFacts("video", d.path, len(frames), None, d.channels == 1, "data.channels", None, False)
    train = named_training_set(cfg)
    return DataFacts(d.dataset, d.path, len(train), NAMED_SIZES.get(d.dataset.split("-")[0]),
                     looks_grayscale(train, d.channels), "its pixels", None, bool((train.labels >= 0).any()))


def folder_facts(cfg: Config) -> DataFacts:
    """A folder or .tar: listed once, split once (folder_split), the headers of up to SIZE_SAMPLE
    images for the typical side, and for images held in memory the pixels of up to
    GRAYSCALE_SAMPLE training images (decoded at GRAYSCALE_SIDE) for grayscale; streamed images are
    grayscale when data.channels is 1."""
    from byol.data.cache import read_marker

    d = cfg.data
    listed = list_images(d.path)
    images, held, in_memory = folder_split(cfg, listed)
    if d.channels == 1:
        grayscale, told = True, "data.channels"
    elif in_memory:
        sample = decode_to_memory(images, GRAYSCALE_SIDE, d.channels, limit=GRAYSCALE_SAMPLE, decoder=d.jpeg_decoder)
        grayscale, told = looks_grayscale(sample, d.channels), "the pixels of a sample"
    else:
        grayscale, told = False, "streamed images are taken to be in colour"
    return DataFacts("folder", d.path, len(images), typical_side(listed), grayscale, told, in_memory,
                     listed.labeled, read_marker(d.path), len(listed.left_out), images, held)


def folder_split(cfg: Config, listed: ImageList) -> tuple[ImageList, ImageList | None, bool]:
    """A folder's training images (data.limit_per_class, data.limit, less those held out), the
    held-out ones (data.val_fraction of each class, when the kNN monitor runs without
    data.val_path) or None, and whether they are kept in memory (below MEMORY_LIMIT_IMAGES)."""
    d, t = cfg.data, cfg.train
    images, held = listed, None
    if d.limit_per_class:
        images = first_per_class(images, d.limit_per_class)
    if d.limit:
        images = random_subset(images, d.limit, t.seed)
    in_memory = d.in_memory if d.in_memory is not None else (len(images) <= MEMORY_LIMIT_IMAGES
                                                             and d.large_images != "full")
    if t.knn_every > 0 and images.labeled and not d.val_path and d.val_fraction > 0:
        # held out of training too; copies looked for where the images are read whole anyway
        images, held = split_held_out(images, d.val_fraction, t.seed, find_copies=in_memory)
    return images, held, in_memory


def typical_side(listed: ImageList) -> int | None:
    """The median shorter side of up to SIZE_SAMPLE of a folder's images (their headers); None
    for an archive or where none can be read."""
    if not os.path.isdir(listed.root):
        return None
    from PIL import Image

    sides = []
    for item in random_subset(listed, SIZE_SAMPLE, 0).items:
        try:
            with Image.open(os.path.join(listed.root, item)) as im:
                sides.append(min(im.size))
        except DECODE_ERRORS:
            continue  # unreadable or a decompression bomb: said (and skipped) when the images are decoded
    return sorted(sides)[len(sides) // 2] if sides else None


def named_training_set(cfg: Config):
    """A named data set's training images as a run uses them (data.split, data.limit,
    data.channels), read once per process (named_set)."""
    d, t = cfg.data, cfg.train
    split = d.split or ("train+unlabeled" if d.dataset == "stl10" else "train")
    train = named_set(d.dataset, d.path, split, d.channels)
    if d.limit and d.limit < len(train):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(t.seed))
        train = train.subset(order[:d.limit].sort().values)
    return train


@functools.lru_cache(maxsize=4)
def named_set(name: str, path: str, split: str, channels: int):
    """A named data set's split at `channels`, read from its files once per process: the facts
    count it, the run then trains on the same images."""
    from byol.data.datasets import load_dataset, match_channels

    return match_channels(load_dataset(name, path, split), channels)
