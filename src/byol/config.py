"""Run configuration: one frozen, typed value, built once from YAML files and the command line.

    cfg = load_config(["cifar10", "my.yaml"], ["--train.epochs", "10", "--optim.base_lr", "1.0"])

The keys are the fields of the dataclasses below (the augmentation's are `byol.core.augment`'s):
each states its type (choices as `Literal`), default, rules (`ge`, `gt`) and help text, and
pydantic checks them. To add a key, add a field here with `key(default, help, rules)`; the YAML
files, `--section.key VALUE`, `byol pretrain --help` and the run's config.yaml all follow.

Layering: defaults < the epoch preset < each file in order < the command line; a preset never
changes a key that a file or the command line set. A bad key or value is one ConfigError line
that names the key and the file (or the command line) that set it. After this, nothing changes
a Config: `updated` returns a new one (the run plan's decisions: byol.training.plan.decide).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import typing
from dataclasses import field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from byol.core.augment import AugmentConfig
from byol.core.model import ModelSpec
from byol.core.optim import OPTIMIZERS


class ConfigError(ValueError):
    """A configuration key or value that cannot be used."""


# Unknown keys are refused; help texts are Field descriptions here and attribute docstrings in
# byol.core.augment; numbers are accepted where a string is asked for (backbone: 18 is "18").
RULES = ConfigDict(extra="forbid", use_attribute_docstrings=True, coerce_numbers_to_str=True, allow_inf_nan=False)


def key(default, help: str, resume: bool = False, **rules):
    """A config key: its default, its help text and its rules (pydantic's ge, gt, le). resume:
    a resumed run may give it another value (it changes logging, speed or the run's length, not
    what the run computes; resumable_keys)."""
    extra = {"resume": True} if resume else None
    if isinstance(default, dict):
        return Field(default_factory=dict, description=help, json_schema_extra=extra, **rules)
    return Field(default, description=help, json_schema_extra=extra, **rules)


Precision = typing.Annotated[Literal["auto", "32", "bf16", "16"], BeforeValidator(lambda v: str(v))]


@dataclass(frozen=True, config=RULES)
class DataConfig:
    dataset: str = key("folder", "folder (ImageFolder dir or .tar), video, pairs, shards, cifar10, cifar100, stl10, mnist, emnist-*")
    path: str = key("", "training images (folder/tar), or where the named data set's files are")
    split: Optional[str] = key(None, "named data sets: pretraining split (stl10: train+unlabeled)")
    max_frame_gap: int = key(1, "video: the two views are frames at most this far apart", ge=1)
    pairs_file: Optional[str] = key(None, "pairs: a text file of positive pairs (two acquisitions of one place: two dates, or two sensors), two files per line relative to data.path, separated by a comma or a tab; None: each sub-folder of data.path is one place, and any two of its images are a pair")
    val_path: Optional[str] = key(None, "labeled images for the kNN monitor")
    val_fraction: float = key(0.1, "held out of labeled training data when val_path is unset", ge=0, lt=1)
    image_size: int = key(32, "network input (the random resized crop's output); unset: the images' typical shorter side (16-224)", ge=8, le=4096)
    load_size: Optional[int] = key(None, "images are decoded to this size (default image_size); large_images full: the bound on the shorter side (None: none)", ge=8, le=16384)
    channels: typing.Union[Literal["auto"], typing.Annotated[int, Field(ge=1, le=1024)]] = key("auto", "the network's input bands: auto (3, RGB, for 8-bit pictures; the files' band count, or data.bands', for full-precision data) | N (1: a grayscale network)")
    pixels: Literal["auto", "8-bit", "full"] = key("auto", "8-bit: pictures as 8-bit gray or RGB (16-bit ones scaled down) | full: values as stored (16-bit, float, DICOM's physical units, any number of bands: TIFF, .npy, .npz, .dcm), standardised per band from the data | auto: 8-bit where the files are 8-bit pictures, else full")
    bands: Optional[list[typing.Annotated[int, Field(ge=0)]]] = key(None, "full: the 0-based bands read, in this order (e.g. [3, 2, 1, 7]); None: all")
    layout: Literal["auto", "chw", "hwc"] = key("auto", "full: a 3-D array's layout, (bands, H, W) or (H, W, bands); auto: TIFF's axes, else the shorter axis is the bands'")
    window: Optional[tuple[float, float]] = key(None, "DICOM: [centre, width] in physical units (e.g. [40, 400] for soft tissue in CT); values are clipped to it")
    clip_percentiles: Optional[tuple[float, float]] = key(None, "full: each band clipped to these percentiles of the sampled training values before it is standardised, e.g. [1, 99]; None: no clipping")
    clip: Optional[tuple[list[float], list[float]]] = key(None, "full: [lows, highs], one value per band, that each band is clipped to as it is read; set from data.clip_percentiles by the run plan, or given")
    stats_images: int = key(512, "full: training images sampled for the per-band mean, standard deviation and percentiles", ge=1)
    in_memory: Optional[bool] = key(None, "decode all once into RAM; None: yes below 300k images")
    large_images: Literal["resize", "crop", "full"] = key("resize", "resize (centre square) | crop (random load_size crops, e.g. DIV2K) | full (each view's crop from the whole image, in the data workers; streamed data)")
    eval_crop: float = key(1.0, "evaluation: the centre eval_crop of the image (ImageNet: 0.875 = 224 of 256)", gt=0, le=1)
    augment_on: Literal["device", "workers"] = key("device", "device (batched, fast) | workers (per image in the Dataset)")
    crop_on: Literal["auto", "device", "workers"] = key("auto", "large_images full: where each view's crop is cut and resized: device (the workers only decode; the whole batch on the training device) | workers (Pillow, per image) | auto (device on a GPU; on a CPU the one measured faster end to end)", resume=True)
    num_workers: Optional[int] = key(None, "DataLoader worker processes for streamed data (in-memory data needs none); None: the cores this process may use, less one for the training loop", ge=0, resume=True)
    jpeg_decoder: Literal["auto", "pillow", "simplejpeg"] = key("auto", "auto (simplejpeg where installed: the fast-jpeg extra; else Pillow) | pillow | simplejpeg")
    limit: Optional[int] = key(None, "use only N images (a random subset, fixed by train.seed)", gt=0)
    limit_per_class: Optional[int] = key(None, "use only the first N images of each class", gt=0)


@dataclass(frozen=True, config=RULES)
class ModelConfig(ModelSpec):
    """The network, its starting weights, and the BYOL spec around it (byol.core.model.ModelSpec:
    the heads, the hidden layer, the target's EMA), whose fields are this section's other keys."""
    backbone: str = key("resnet18", "resnet18/34/50, timm:NAME, or 'package.module:Class'")
    backbone_args: dict = key({}, "e.g. {stem: cifar, width: 0.5}")
    init_weights: str = key("", "start from these weights: .safetensors (exported or fine-tuned), .ckpt, or .pt/.pth state dict; or published weights: torchvision:resnet50.IMAGENET1K_V2 (resnet18/34/50), hf-hub:ORG/NAME (a Hugging Face model's model.safetensors, e.g. hf-hub:timm/resnet50.a1_in1k); read from the torch hub / Hugging Face cache, downloaded when missing")


@dataclass(frozen=True, config=RULES)
class OptimConfig:
    name: Literal[OPTIMIZERS] = key("lars", "lars | sgd | adam | adamw")
    base_lr: float = key(0.2, "learning rate = base_lr x global batch / 256", gt=0)
    weight_decay: float = key(1.5e-6, "paper: 1.5e-6 (LARS, ImageNet)", ge=0)
    momentum: float = key(0.9, "SGD/LARS momentum", ge=0, lt=1)
    trust_coefficient: float = key(1e-3, "LARS eta (paper: 1e-3)", gt=0)
    clip_lr: bool = key(False, "LARS: the adaptive rate never exceeds the scheduled one (LARC clipping)")
    exclude_bias_and_norm: bool = key(True, "no weight decay (nor LARS ratio) on biases and norm parameters")
    warmup_epochs: float = key(10.0, "linear warm-up, then cosine decay to 0 (paper: 10 epochs)", ge=0)
    predictor_lr_scale: float = key(1.0, "the predictor's learning rate is this times the rest's", gt=0)
    backbone_lr_scale: float = key(1.0, "the backbone's learning rate is this times the heads' (below 1: keep "
                                        "what pretrained weights know while the new heads learn)", gt=0)
    backbone_held_epochs: float = key(0.0, "the backbone's learning rate is 0 for this many epochs while the new "
                                           "heads learn first (linear probing, then fine-tuning)", ge=0)
    schedule_per: Literal["step", "epoch"] = key("step", "step: warm-up and cosine move every optimizer step | epoch: once an epoch (lightly's benchmark)")


@dataclass(frozen=True, config=RULES)
class TrainConfig:
    epochs: int = key(100, "0: evaluate the untrained network only (kNN, checkpoint to export)", ge=0, resume=True)
    batch_size: int = key(256, "per device (at least 2: batch norm)", ge=2)
    accumulate: int = key(1, "gradient accumulation: micro-batches per optimizer step", ge=1)
    precision: Precision = key("auto", "auto | 32 | bf16 | 16 (auto: bf16 where the hardware has it)")
    channels_last: bool = key(True, "channels-last memory layout (faster convolutions)")
    compile: bool = key(False, "torch.compile the BYOL forward; falls back to eager if it fails", resume=True)
    data_on_device: Optional[bool] = key(None, "in-memory images kept on the GPU; None: yes on a GPU")
    seed: int = key(0, "initial weights, data order and augmentations", ge=0, le=2**32 - 1)
    out_dir: str = key("runs/byol", "run folder: config, checkpoints, logs, report", resume=True)
    checkpoint_every: int = key(1, "epochs", ge=1, resume=True)
    checkpoint_every_steps: int = key(0, "also every N optimizer steps, mid-epoch (0: off)", ge=0, resume=True)
    keep_checkpoints: int = key(0, "keep the last K as checkpoints/step-N.ckpt besides last.ckpt", ge=0, resume=True)
    skip_nonfinite: bool = key(False, "skip steps whose loss is NaN/inf instead of stopping", resume=True)
    knn_every: int = key(5, "epochs; 0 turns the kNN monitor off", ge=0, resume=True)
    knn_k: int = key(200, "kNN monitor: neighbours (Wu et al. 2018: 200)", ge=1)
    knn_temperature: float = key(0.1, "kNN monitor: vote weights exp(similarity / T)", gt=0)
    log_every: int = key(10, "steps", ge=1, resume=True)
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = key("auto", "auto | cpu | gpu (Lightning accelerator; gpu and cuda need a CUDA GPU)", resume=True)
    devices: int = key(1, "per node; >1 trains with DDP (torchrun and SLURM set ranks themselves)", ge=1, resume=True)
    num_nodes: int = key(1, "machines; train.devices processes on each", ge=1, resume=True)
    sync_batchnorm: bool = key(True, "SyncBatchNorm across ranks when more than one process trains")
    threads: Optional[int] = key(None, "CPU threads for torch (default: torch's choice)", ge=1, resume=True)
    resolution_schedule: dict[float, int] = key({}, "progressive resizing: {start, as a fraction of the run: view side}, e.g. "
                                                    "{0: 24} at 32 px (views at 0.75 of the side) or {0: 24, 0.5: 28, 0.75: 32}; "
                                                    "data.image_size before the first start and when empty")


@dataclass(frozen=True, config=RULES)
class LogConfig:
    csv: bool = key(True, "csv/metrics.csv in the run folder", resume=True)
    tensorboard: bool = key(True, "tensorboard/ in the run folder", resume=True)
    progress: bool = key(True, "a progress bar on a terminal; plain lines every log.progress_every seconds otherwise", resume=True)
    progress_every: float = key(30.0, "seconds between plain progress lines (output to a file: nohup, SLURM); 0: every step", ge=0, resume=True)
    mlflow_uri: Optional[str] = key(None, "MLflow tracking URI (pip install 'byol[mlflow]')", resume=True)
    mlflow_experiment: str = key("byol_experiment", "MLflow experiment name", resume=True)
    mlflow_run_id: Optional[str] = key(None, "log into this existing MLflow run", resume=True)
    report: bool = key(True, "plots and report.html in the run folder at the end (byol report RUN_DIR)", resume=True)


PROVENANCE = ("given", "notes")  # Config fields that say where the settings came from; not settings


@dataclass(frozen=True, config=RULES)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    epoch_presets: dict = key({}, "settings picked by train.epochs: {epochs: {optim.base_lr: 0.3, ...}}; the entry "
                                  "for train.epochs, else the nearest on a log scale")
    given: dict = field(default_factory=dict, compare=False, repr=False)  # dotted key -> the file, preset or command line
    notes: list = field(default_factory=list, compare=False, repr=False)  # what was decided for the user (presets, data)

    def __post_init__(self):
        """The rules that tie two keys together; each error starts 'key = value: '."""
        from byol.data.datasets import DATASETS

        d = self.data

        def need(ok: bool, key: str, value, what: str):
            if not ok:
                raise ValueError(f"{key} = {value!r}: {what}")

        need(d.dataset in ("folder", "video", "pairs", "shards", *DATASETS), "data.dataset", d.dataset,
             f"must be folder, video, pairs, shards, {', '.join(DATASETS)}")
        need(d.pairs_file is None or d.dataset == "pairs", "data.pairs_file", d.pairs_file,
             "it lists the pairs of data.dataset pairs; set data.dataset pairs")
        need(d.load_size is None or d.load_size >= d.image_size // 2, "data.load_size", d.load_size,
             "must be at least half of data.image_size")
        need(not (d.large_images == "full" and d.in_memory), "data.in_memory", d.in_memory,
             "large_images: full streams the images; set data.in_memory: false")
        need(d.large_images != "full" or d.dataset in ("folder", "shards"), "data.large_images", d.large_images,
             f"full reads image folders and shards; {d.dataset} images are read as resize or crop")
        need(d.crop_on == "auto" or d.large_images == "full", "data.crop_on", d.crop_on,
             "it places the crops taken from whole photos (data.large_images: full); set data.large_images full, "
             "or leave data.crop_on auto")
        need(d.crop_on != "device" or d.augment_on == "device", "data.crop_on", d.crop_on,
             "data.augment_on workers makes both views in the workers; set data.augment_on device, or "
             "data.crop_on workers")
        need(d.crop_on != "device" or self.augment.interpolation != "nearest", "data.crop_on", d.crop_on,
             "the device resizes with Pillow's bicubic or bilinear filter; augment.interpolation nearest needs "
             "data.crop_on workers")
        need(d.jpeg_decoder != "simplejpeg" or importlib.util.find_spec("simplejpeg") is not None,
             "data.jpeg_decoder", d.jpeg_decoder, "simplejpeg is not installed: pip install 'byol[fast-jpeg]', or set auto")
        a, o, t = self.augment, self.optim, self.train
        if d.pixels != "full":  # 8-bit pictures (full-precision data is checked once its bands are known)
            need(d.channels == "auto" or len(a.mean) >= d.channels, "augment.mean/std", (a.mean, a.std),
                 "need one value per channel")
            check_8_bit_normalisation(a.mean, a.std)
        need(all(v > 0 for v in a.std), "augment.std", a.std, "each value must be above 0: it divides")
        need(d.bands is None or len(d.bands) > 0, "data.bands", d.bands, "name at least one band, or leave it unset")
        need(d.bands is None or d.channels in ("auto", len(d.bands or ())), "data.channels", d.channels,
             f"data.bands names {len(d.bands or ())} bands: set data.channels to that, or auto")
        need(d.bands is None or d.pixels != "8-bit", "data.bands", d.bands,
             "a band selection reads full-precision data; set data.pixels full or auto")
        need(d.clip_percentiles is None or 0 <= d.clip_percentiles[0] < d.clip_percentiles[1] <= 100,
             "data.clip_percentiles", d.clip_percentiles, "two percentiles, low below high, within 0-100")
        need(d.window is None or d.window[1] > 0, "data.window", d.window, "[centre, width] with a width above 0")
        need(d.clip is None or (len(d.clip[0]) == len(d.clip[1]) and all(lo < hi for lo, hi in zip(*d.clip))),
             "data.clip", d.clip, "[lows, highs]: as many of each, every low below its high")
        need(not (d.pixels == "full" and d.large_images == "full"), "data.large_images", d.large_images,
             "full decodes 8-bit photos at the scale their crops need; full-precision data is read as resize or "
             "crop")
        need(o.backbone_held_epochs == 0 or t.epochs == 0 or o.backbone_held_epochs < t.epochs,
             "optim.backbone_held_epochs", o.backbone_held_epochs,
             f"must be below train.epochs ({t.epochs}): the backbone would never train, and the run would export "
             "the weights it started from")
        schedule = self.train.resolution_schedule
        need(all(0 <= start < 1 for start in schedule), "train.resolution_schedule", schedule,
             "each start is a fraction of the run, in [0, 1)")
        need(all(8 <= side <= 4096 for side in schedule.values()), "train.resolution_schedule", schedule,
             "each view side must be 8 to 4096 px (and at most data.image_size, checked once the data set it)")
        need(not self.augment.small_crops or (d.augment_on == "device" and d.large_images != "full"),
             "augment.small_crops", self.augment.small_crops,
             "the small crops are made on the training device from whole images; set data.augment_on: device "
             "and data.large_images: resize or crop")


def check_8_bit_normalisation(mean, std) -> None:
    """8-bit pictures are scaled to [0, 1] before (x - mean) / std: a mean or std on a 0-255
    scale would train on garbage. One ConfigError naming the key."""
    if not all(0 < v <= 1 for v in std):
        raise ConfigError(f"augment.std = {tuple(std)!r}: each value must be in (0, 1], on the [0, 1] scale of 8-bit "
                          "pixels (ImageNet's: 0.229, 0.224, 0.225); data in its own units takes data.pixels full")
    if not all(0 <= v <= 1 for v in mean):
        raise ConfigError(f"augment.mean = {tuple(mean)!r}: each value must be in [0, 1], on the [0, 1] scale of "
                          "8-bit pixels (ImageNet's: 0.485, 0.456, 0.406); data in its own units takes data.pixels "
                          "full")


def input_channels(data: DataConfig) -> int:
    """The network's input channels as a config states them: data.channels, or for auto before
    the run plan decided it, 3 (8-bit RGB pictures)."""
    return 3 if data.channels == "auto" else data.channels


def view_sides(cfg: Config) -> list[int]:
    """Every side the network sees in training besides data.image_size: the resolution
    schedule's and the small crops'."""
    sides = set(cfg.train.resolution_schedule.values())
    if cfg.augment.small_crops:
        sides.add(cfg.augment.small_side)
    return sorted(sides - {cfg.data.image_size})


RECIPES_DIR = Path(__file__).resolve().parent / "configs"


def recipe_names() -> list[str]:
    """The packaged recipes (configs/*.yaml), by name."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def resolve_config_path(name: str | Path) -> Path:
    """A config file path, or the name of a packaged recipe (`cifar10`, `imagenet`, ...)."""
    p = Path(name)
    if p.is_file():
        return p
    packaged = RECIPES_DIR / (p.name if p.suffix == ".yaml" else f"{p.name}.yaml")
    if p.parent == Path(".") and packaged.is_file():
        return packaged
    raise ConfigError(f"config file {str(name)!r} does not exist, and it is not a packaged recipe "
                      f"({', '.join(recipe_names())})")


# --- from layers of values to one Config --------------------------------------------------


def _sections(cls) -> dict[str, Any]:
    """{field name: its dataclass type, or None for a plain key} of a config section."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] if dataclasses.is_dataclass(hints[f.name]) else None
            for f in dataclasses.fields(cls) if f.name not in PROVENANCE}


def flatten(values: Any, source: str, cls=None, prefix: str = "") -> dict[str, Any]:
    """Nested values -> {dotted key: value}; an unknown key is a ConfigError naming `source`."""
    cls = cls or Config
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {prefix[:-1] or 'the top level'} must be a mapping, got {values!r}")
    fields, out = _sections(cls), {}
    for k, v in values.items():
        dotted = f"{prefix}{k}"
        if k not in fields:
            raise ConfigError(f"{source}: unknown key {dotted!r}; valid keys"
                              f"{' in ' + repr(prefix[:-1]) if prefix else ''}: {', '.join(fields)}")
        if fields[k] is not None:
            out.update(flatten(v, source, fields[k], f"{dotted}."))
        else:
            out[dotted] = v
    return out


def _nested(dotted: dict) -> dict:
    """{"optim.base_lr": 0.3} -> {"optim": {"base_lr": 0.3}}."""
    out: dict = {}
    for dotted_key, value in dotted.items():
        node = out
        parts = str(dotted_key).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _resolve(layers: list[tuple[str, dict]]) -> Config:
    """Each (source, nested values) over the defaults in turn, the epoch preset under them all."""
    values: dict[str, Any] = {}
    given: dict[str, str] = {}
    for source, tree in layers:
        for k, v in flatten(tree, source).items():
            values[k], given[k] = v, source
    notes = _apply_epoch_preset(values, given)
    return _build(values, given, notes, fallback=layers[-1][0] if layers else "config")


def _apply_epoch_preset(values: dict, given: dict) -> list[str]:
    """Set the entry of epoch_presets for train.epochs (or the nearest epoch count on a log
    scale) on every key that no file or command line set (`given`); returns the note saying so,
    with the values set and the keys that only other presets set (left as the config has them)."""
    presets = values.get("epoch_presets")
    epochs = values.get("train.epochs", TrainConfig().epochs)
    if not presets or not isinstance(epochs, int):
        return []
    source = given.get("epoch_presets", "config")
    try:
        table = {int(k): v for k, v in presets.items()}
    except (AttributeError, TypeError, ValueError):
        raise ConfigError(f"{source}: epoch_presets keys must be epoch counts, got {presets!r}") from None
    if any(k <= 0 for k in table) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"{source}: epoch_presets must map positive epoch counts to settings "
                          "like {optim.base_lr: 0.3}")
    chosen = min(table, key=lambda k: (abs(math.log(k / max(epochs, 1))), k))
    where = f"{source}: epoch_presets[{chosen}]"
    flat = {n: flatten(_nested(entry), f"{source}: epoch_presets[{n}]") for n, entry in table.items()}
    preset = flat[chosen]
    applied = {k: v for k, v in preset.items() if k not in given}
    kept = sorted(set(preset) - set(applied))
    elsewhere = sorted(set().union(*flat.values()) - set(preset) - set(given))
    values.update(applied)
    given.update(dict.fromkeys(applied, where))
    return [f"epoch_presets: the settings for {chosen} epochs"
            + ("" if chosen == epochs else f" (the nearest preset to {epochs})")
            + (f": {', '.join(f'{k} {v}' for k, v in applied.items())}" if applied else "")
            + (f"; kept as set: {', '.join(kept)}" if kept else "")
            + (f"; set by other presets only, so as the rest of the config has them: {', '.join(elsewhere)}"
               if elsewhere else "")]


def _build(values: dict, given: dict, notes, fallback: str = "config") -> Config:
    """The Config of flat `values`, checked by pydantic; augment.size follows data.image_size."""
    values = dict(values)
    size = values.get("data.image_size", DataConfig().image_size)
    set_size = values.pop("augment.size", size)
    if set_size not in (size, AugmentConfig().size):
        raise ConfigError(f"{given.get('augment.size', fallback)}: augment.size = {set_size!r}: is set from "
                          "data.image_size; leave it out")
    values["augment.size"] = size
    try:
        return _adapter().validate_python({**_nested(values), "given": dict(given), "notes": list(notes)})
    except ValidationError as e:
        raise _one_line(e.errors()[0], given, fallback) from None


@cache
def _adapter() -> TypeAdapter:
    return TypeAdapter(Config)


EXPECTED = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
            "dict": "a mapping", "tuple": "a list", "too": "a list of the right length",
            "missing": "a list of the right length"}
RANGES = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
          "less_than": ("<", "lt")}


def _one_line(err: dict, given: dict, fallback: str) -> ConfigError:
    """A pydantic error as this project's one line: where the value came from, the key, the rule."""
    parts, cls = [], Config
    for p in err["loc"]:  # the field names; union members and tuple indices are left out
        fields = _sections(cls) if cls is not None else {}
        if p not in fields:
            break
        parts.append(p)
        cls = fields[p]
    dotted, kind, value = ".".join(parts), err["type"], err.get("input")
    if kind == "value_error":  # a __post_init__ rule: 'key = value: what', the key within its section
        rule = str(err["ctx"]["error"])
        dotted = ".".join(filter(None, [dotted, rule.split(" = ")[0]]))
        return ConfigError(f"{given.get(dotted, fallback)}: {'.'.join(filter(None, ['.'.join(parts), rule]))}")
    origin = given.get(dotted, fallback)
    if kind == "literal_error":
        return ConfigError(f"{origin}: {dotted} = {value!r}: must be {err['ctx']['expected'].replace(chr(39), '')}")
    if kind in RANGES:
        sign, name = RANGES[kind]
        value = float(value) if isinstance(err["ctx"][name], float) and isinstance(value, int) else value
        return ConfigError(f"{origin}: {dotted} = {value!r}: must be {sign} {err['ctx'][name]}; {describe()[dotted]}")
    expected = EXPECTED.get(kind.split("_")[0])
    if expected:
        return ConfigError(f"{origin}: {dotted}: expected {expected}, got {value!r}")
    return ConfigError(f"{origin}: {dotted} = {value!r}: {err['msg']}")


def from_dict(values: dict | None, source: str = "config") -> Config:
    """A Config from nested values (a run's config.yaml, `BYOLModule(net, dict)`), with the
    epoch preset applied as load_config applies it: to the keys `values` leaves out."""
    return _resolve([(source, values or {})])


def load_config(path: str | Path | list | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the entry of `epoch_presets` for the run's epochs, then each YAML file in
    order (one path, a packaged recipe's name, or a list), then the overrides: a preset never
    changes a key that a file or the command line set. `cfg.given` names the source of each key
    that a file, a preset or the command line set; `cfg.notes` says which preset was applied."""
    layers = []
    for p in ([] if path is None else path if isinstance(path, (list, tuple)) else [path]):
        p = resolve_config_path(p)
        try:
            layers.append((str(p), read_yaml(p.read_text()) or {}))
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML at {yaml_problem(e)}") from None
    if overrides:
        layers.append(("command line", parse_overrides(overrides)))
    return _resolve(layers)


def as_config(value: Config | dict | str | Path | list | None) -> Config:
    """A Config from what a Python caller has: a Config as it is; a dict of nested values
    (from_dict); a YAML path or packaged recipe name, or a list of them (load_config)."""
    if isinstance(value, Config):
        return value
    if value is None or isinstance(value, dict):
        return from_dict(value)
    if isinstance(value, (str, Path, list, tuple)):
        return load_config(value)
    raise ConfigError(f"a config must be a dict, a YAML path, a recipe name or a byol Config; got {type(value).__name__}")


def updated(cfg: Config, changes: dict[str, Any], notes: list[str] = ()) -> Config:
    """A new Config: `cfg` with `changes` ({dotted key: value}) made and `notes` added. The
    changed keys stay defaults in cfg.given (a choice made for the user is said in notes)."""
    values = flatten(to_dict(cfg), "config")
    del values["augment.size"]  # follows data.image_size
    values.update(changes)
    return _build(values, cfg.given, (*cfg.notes, *notes))


def _plain(x):
    """Tuples as lists, recursively: what YAML writes and reads back."""
    if isinstance(x, (tuple, list)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def to_dict(cfg) -> dict:
    """The settings as plain nested values (what config.yaml holds); no provenance."""
    return {k: _plain(v) for k, v in dataclasses.asdict(cfg).items() if k not in PROVENANCE}


def parse_overrides(args: list[str]) -> dict:
    """['--train.epochs', '5', '--optim.name=sgd'] -> nested dict; values parsed as YAML."""
    out: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"expected an override like --section.key VALUE, got {arg!r}")
        if "=" in arg:
            name, raw = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override {arg!r} has no value")
            name, raw = arg[2:], args[i + 1]
            i += 2
        try:
            out[name.replace("-", "_")] = read_yaml(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"command line: --{name} {raw!r} is not valid YAML ({yaml_problem(e)}); quote it "
                              "and close every bracket, e.g. --model.backbone_args '{width: 0.25}'") from None
    return _nested(out)


YAML_MAX_NODES = 100_000  # a config, once its aliases are expanded; a "billion laughs" file has 10^9


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader (plain data, no Python tags) that also refuses a key given twice in one
    mapping (YAML keeps the last silently) and a document whose aliases expand to more than
    YAML_MAX_NODES nodes (an alias bomb would take every later step minutes and the memory)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    f"while reading the mapping that starts at line {node.start_mark.line + 1}", node.start_mark,
                    f"the key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); "
                    "keep one", key_node.start_mark)
            seen.setdefault(key, key_node.start_mark.line)
        return super().construct_mapping(node, deep)

    def construct_document(self, node):
        sizes: dict[int, int] = {}

        def size(n) -> int:  # nodes after alias expansion, each shared node counted once per use
            if id(n) not in sizes:
                sizes[id(n)] = 0  # a recursive alias: counted once
                children = ([c for pair in n.value for c in pair] if isinstance(n, yaml.MappingNode) else
                            n.value if isinstance(n, yaml.SequenceNode) else [])
                sizes[id(n)] = min(1 + sum(size(c) for c in children), YAML_MAX_NODES + 1)
            return sizes[id(n)]

        if size(node) > YAML_MAX_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"its aliases expand to more than {YAML_MAX_NODES} values; a config has a few hundred",
                node.start_mark)
        return super().construct_document(node)


def read_yaml(text: str):
    """YAML text as plain data, through StrictLoader; errors are yaml.YAMLError (yaml_problem)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader


def yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: where (line and column, counted from 1) and what."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return (f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else "") + problem


# --- help ---------------------------------------------------------------------------------


@cache
def key_schemas() -> dict[str, dict]:
    """{dotted key: its JSON-schema property (type, range, description)} of every key, from the
    schema that pydantic makes of Config."""
    schema = _adapter().json_schema()
    out: dict[str, dict] = {}

    def walk(node: dict, prefix: str) -> None:
        for name, prop in node.get("properties", {}).items():
            ref = prop.get("$ref") or next((a["$ref"] for a in prop.get("allOf", []) if "$ref" in a), None)
            if ref:
                walk(schema["$defs"][ref.split("/")[-1]], f"{prefix}{name}.")
            elif name not in PROVENANCE:
                out[f"{prefix}{name}"] = prop

    walk(schema, "")
    for section, kind in _sections(Config).items():  # help of fields a section takes from a base (ModelSpec)
        if kind is not None:
            for name, text in attribute_docstrings(kind).items():
                prop = out.get(f"{section}.{name}")
                if prop is not None and not prop.get("description"):
                    prop["description"] = text
    return out


def attribute_docstrings(cls) -> dict[str, str]:
    """{field: the string literal under it} of a dataclass and its dataclass bases: the help of
    keys declared in byol.core (pydantic reads only the class's own)."""
    import ast
    import inspect
    import textwrap

    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(base):
            continue
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(base))).body[0].body
        except (OSError, TypeError, SyntaxError):
            continue
        for field_node, doc in zip(body, body[1:]):
            if isinstance(field_node, ast.AnnAssign) and isinstance(field_node.target, ast.Name) and \
                    isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                out[field_node.target.id] = doc.value.value
    return out


def resumable_keys() -> set[str]:
    """The dotted keys a resumed run may change (declared with key(..., resume=True))."""
    return {k for k, prop in key_schemas().items() if prop.get("resume")}


def describe() -> dict[str, str]:
    """{dotted key: help text} of every key."""
    return {k: prop.get("description", "") for k, prop in key_schemas().items()}
