"""What a run's decisions need to know of the world, each read once, before anything is decided:
the launch (how many training processes, which one this is), the hardware, the named weights'
own description, and the training data (byol.data.sources.survey: its images listed and
split, their typical size and number, whether they are grayscale, whether the folder is a
resized cache).

    launch = read_launch()                 # the environment a launcher set, read here and nowhere else
    facts = read_facts(cfg, launch)        # a value: printable (as_dict), with no Config inside

`byol pretrain`, its `--print-config`, `byol preview` and the Python `pretrain()` all read them
through here and decide from them with byol.training.plan.decide.
"""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field

import torch

from byol.config import Config
from byol.data.sources import DataFacts, DataSpec, survey


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
class Facts:
    """Everything a run's decisions read of the world (see the module docstring), the package's
    measurements of how many steps similar data needed (byol.training.budget), and of where
    photos' crops are cut faster on a CPU (crop_speeds)."""
    data: DataFacts
    weights: Weights | None
    launch: Launch
    hardware: Hardware
    measurements: tuple = field(default=(), repr=False)  # budget.json's entries
    crop_speeds: tuple = field(default=(), repr=False)  # crop_speed.json's entries (plan.decide_crops)

    def as_dict(self) -> dict:
        """The facts as plain values (what plan.json keeps), without the image lists."""
        out = asdict(self)
        for key in ("images", "held"):
            out["data"].pop(key, None)
        out.pop("measurements")
        out.pop("crop_speeds")
        return out


def read_facts(cfg: Config, launch: Launch | None = None) -> Facts:
    """The facts of the run `cfg` asks for (see Facts); the launch as read_launch found it."""
    from byol.training.budget import measured

    return Facts(survey(data_spec(cfg)), read_weights(cfg.model.init_weights), launch or read_launch(),
                 read_hardware(), tuple(measured()), tuple(crop_speeds()))


def crop_speeds() -> list[dict]:
    """The packaged end-to-end measurements of where photos' crops are cut (crop_speed.json,
    written by benchmarks/results.py from benchmarks/results/crop_on.jsonl); [] where none."""
    import json
    from importlib import resources

    try:
        return json.loads(resources.files("byol.training").joinpath("crop_speed.json").read_text())
    except FileNotFoundError:
        return []


def data_spec(cfg: Config) -> DataSpec:
    """What a run reads (byol.data.sources.DataSpec): the config's data keys, its seed and whether
    its kNN monitor runs."""
    d = cfg.data
    return DataSpec(d.dataset, d.path, d.split, d.val_path, d.val_fraction, d.channels, d.limit, d.limit_per_class,
                    d.in_memory, d.large_images, d.jpeg_decoder, d.max_frame_gap, cfg.train.seed,
                    cfg.train.knn_every > 0, d.pixels, None if d.bands is None else tuple(d.bands), d.layout,
                    None if d.window is None else tuple(d.window),
                    None if d.clip_percentiles is None else tuple(d.clip_percentiles), d.stats_images,
                    d.pairs_file)
