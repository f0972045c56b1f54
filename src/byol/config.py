"""Run configuration: typed dataclasses, read from YAML, overridden from the command line.

    cfg = load_config("configs/cifar10.yaml", ["--train.epochs", "10", "--optim.base_lr", "1.0"])

Every key is checked before any work starts: an unknown key is named with the valid ones
listed, a wrong type or an out-of-range value is named with what is expected.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from .augment import AugmentConfig


class ConfigError(ValueError):
    """A configuration key or value that cannot be used."""


@dataclass
class DataConfig:
    dataset: str = "folder"  # folder (ImageFolder dir or .tar), video, shards, cifar10, cifar100, stl10, mnist, emnist-*
    path: str = ""  # training images (folder/tar), or where the named data set's files are
    split: Union[str, None] = None  # named data sets: pretraining split (stl10: train+unlabeled)
    max_frame_gap: int = 1  # video: the two views are frames at most this far apart
    val_path: Union[str, None] = None  # labeled images for the kNN monitor
    val_fraction: float = 0.1  # held out of labeled training data when val_path is unset
    image_size: int = 32  # network input (output of the random resized crop)
    load_size: Union[int, None] = None  # images are decoded to this size (default image_size)
    channels: int = 3  # 3 (RGB) or 1 (grayscale networks)
    in_memory: Union[bool, None] = None  # decode all once into RAM; None: yes below 300k images
    large_images: str = "resize"  # resize | crop (random load_size crops, e.g. DIV2K)
    augment_on: str = "device"  # device (batched, fast) | workers (per image in the Dataset)
    num_workers: int = 2
    limit: Union[int, None] = None  # use only N images (a random subset, fixed by train.seed)
    limit_per_class: Union[int, None] = None  # use only the first N images of each class


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # resnet18/34/50, or 'package.module:Class'
    backbone_args: dict = field(default_factory=dict)  # e.g. {stem: cifar, width: 0.5}
    hidden_layer: Union[str, int, None] = None  # None: the network's output
    projection_dim: int = 256
    projection_hidden_dim: int = 4096
    prediction_hidden_dim: int = 4096
    tau_base: float = 0.996
    concat_views: bool = False
    head_batchnorm: bool = True  # BatchNorm1d in projector and predictor (paper, Section 3.3)


@dataclass
class OptimConfig:
    name: str = "lars"  # lars | sgd | adam | adamw
    base_lr: float = 0.2  # learning rate = base_lr x global batch / 256
    weight_decay: float = 1.5e-6
    momentum: float = 0.9
    trust_coefficient: float = 1e-3
    warmup_epochs: float = 10.0


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 256  # per device
    accumulate: int = 1
    precision: str = "auto"  # auto | 32 | bf16 | 16 (auto: bf16 where the hardware has it)
    channels_last: bool = True
    compile: bool = False  # torch.compile the BYOL forward; falls back to eager if it fails
    data_on_device: Union[bool, None] = None  # in-memory images kept on the GPU; None: yes on a GPU
    seed: int = 0
    out_dir: str = "runs/byol"
    checkpoint_every: int = 1  # epochs
    checkpoint_every_steps: int = 0  # also every N optimizer steps, mid-epoch (0: off)
    keep_checkpoints: int = 0  # keep the last K as checkpoints/step-N.ckpt besides last.ckpt
    skip_nonfinite: bool = False  # skip steps whose loss is NaN/inf instead of stopping
    knn_every: int = 5  # epochs; 0 turns the kNN monitor off
    knn_k: int = 200
    knn_temperature: float = 0.1
    log_every: int = 10  # steps
    accelerator: str = "auto"
    devices: int = 1  # per node; >1 trains with DDP (torchrun and SLURM set ranks themselves)
    num_nodes: int = 1
    sync_batchnorm: bool = True  # SyncBatchNorm across ranks when more than one process trains
    threads: Union[int, None] = None


@dataclass
class LogConfig:
    csv: bool = True
    tensorboard: bool = True
    progress: bool = True
    mlflow_uri: Union[str, None] = None
    mlflow_experiment: str = "byol_experiment"
    mlflow_run_id: Union[str, None] = None
    report: bool = True  # plots and report.html in the run folder at the end (byol report RUN_DIR)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


# ---------------------------------------------------------------------------


def _coerce(value: Any, tp, key: str):
    """Check/convert `value` to the annotated type `tp`; ConfigError naming `key` if it can't."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(_type_name(a) for a in args)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp}")


def _type_name(tp) -> str:
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _apply(obj, values: dict, prefix: str, source: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {prefix or 'the top level'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise ConfigError(f"{source}: unknown key {key!r}; valid keys"
                              f"{' in ' + repr(prefix[:-1]) if prefix else ''}: {', '.join(names)}")
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current):
            _apply(current, v, f"{key}.", source)
        else:
            setattr(obj, k, _coerce(v, hints[k], f"{source}: {key}"))


def from_dict(values: dict | None, source: str = "config") -> Config:
    cfg = Config()
    _apply(cfg, values or {}, "", source)
    validate(cfg, source)
    return cfg


def to_dict(cfg: Config) -> dict:
    def plain(x):
        if isinstance(x, tuple):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x
    return plain(dataclasses.asdict(cfg))


def parse_overrides(args: list[str]) -> dict:
    """['--train.epochs', '5', '--optim.name=sgd'] -> nested dict; values parsed as YAML."""
    out: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"expected an override like --section.key VALUE, got {arg!r}")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override {arg!r} has no value")
            key, raw = arg[2:], args[i + 1]
            i += 2
        node = out
        parts = key.replace("-", "_").split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return out


def load_config(path: str | Path | list | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then each YAML file in order (one path or a list), then the overrides."""
    cfg = Config()
    source = "config"
    for p in ([] if path is None else path if isinstance(path, (list, tuple)) else [path]):
        p = Path(p)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            values = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        source = str(p)
        _apply(cfg, values, "", source)
    if overrides:
        _apply(cfg, parse_overrides(overrides), "", "command line")
    validate(cfg, source)
    return cfg


def validate(cfg: Config, source: str = "config") -> None:
    """Ranges and choices, checked before any work starts."""
    def need(ok: bool, key: str, value, what: str):
        if not ok:
            raise ConfigError(f"{source}: {key} = {value!r}: {what}")

    d, m, o, t, a = cfg.data, cfg.model, cfg.optim, cfg.train, cfg.augment
    from .datasets import DATASETS

    need(d.dataset in ("folder", "video", "shards", *DATASETS), "data.dataset", d.dataset,
         f"must be folder, video, shards, {', '.join(DATASETS)}")
    need(d.max_frame_gap >= 1, "data.max_frame_gap", d.max_frame_gap, "must be >= 1")
    need(d.image_size >= 8, "data.image_size", d.image_size, "must be at least 8")
    need(d.load_size is None or d.load_size >= d.image_size // 2, "data.load_size", d.load_size,
         "must be at least half of data.image_size")
    need(d.channels in (1, 3), "data.channels", d.channels, "must be 1 or 3")
    need(d.large_images in ("resize", "crop"), "data.large_images", d.large_images, "must be resize or crop")
    need(d.augment_on in ("device", "workers"), "data.augment_on", d.augment_on, "must be device or workers")
    need(0.0 <= d.val_fraction < 1.0, "data.val_fraction", d.val_fraction, "must be in [0, 1)")
    need(d.num_workers >= 0, "data.num_workers", d.num_workers, "must be >= 0")
    need(d.limit is None or d.limit > 0, "data.limit", d.limit, "must be positive")
    need(d.limit_per_class is None or d.limit_per_class > 0, "data.limit_per_class", d.limit_per_class,
         "must be positive")
    need(0.0 <= m.tau_base <= 1.0, "model.tau_base", m.tau_base, "must be in [0, 1]")
    for k in ("projection_dim", "projection_hidden_dim", "prediction_hidden_dim"):
        need(getattr(m, k) > 0, f"model.{k}", getattr(m, k), "must be positive")
    need(o.name in ("lars", "sgd", "adam", "adamw"), "optim.name", o.name, "must be lars, sgd, adam or adamw")
    need(o.base_lr > 0, "optim.base_lr", o.base_lr, "must be positive")
    need(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    need(o.warmup_epochs >= 0, "optim.warmup_epochs", o.warmup_epochs, "must be >= 0")
    need(t.epochs > 0, "train.epochs", t.epochs, "must be positive")
    need(t.batch_size >= 2, "train.batch_size", t.batch_size, "must be at least 2 (batch norm)")
    need(t.accumulate >= 1, "train.accumulate", t.accumulate, "must be >= 1")
    need(t.precision in ("auto", "32", "bf16", "16"), "train.precision", t.precision, "must be auto, 32, bf16 or 16")
    need(t.checkpoint_every >= 1, "train.checkpoint_every", t.checkpoint_every, "must be >= 1")
    need(t.checkpoint_every_steps >= 0, "train.checkpoint_every_steps", t.checkpoint_every_steps, "must be >= 0")
    need(t.keep_checkpoints >= 0, "train.keep_checkpoints", t.keep_checkpoints, "must be >= 0")
    need(t.knn_every >= 0, "train.knn_every", t.knn_every, "must be >= 0")
    need(t.knn_k >= 1, "train.knn_k", t.knn_k, "must be >= 1")
    need(t.knn_temperature > 0, "train.knn_temperature", t.knn_temperature, "must be positive")
    need(t.log_every >= 1, "train.log_every", t.log_every, "must be >= 1")
    need(t.devices >= 1, "train.devices", t.devices, "must be >= 1")
    need(t.num_nodes >= 1, "train.num_nodes", t.num_nodes, "must be >= 1")
    need(a.size == d.image_size or a.size == AugmentConfig().size, "augment.size", a.size,
         "is set from data.image_size; leave it out")
    need(len(a.mean) == len(a.std) and len(a.mean) >= d.channels, "augment.mean/std", (a.mean, a.std),
         "need one value per channel")
    for name, view in (("view1", a.view1), ("view2", a.view2)):
        for k in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            v = getattr(view, k)
            need(0.0 <= v <= 1.0, f"augment.{name}.{k}", v, "is a probability, must be in [0, 1]")
        need(0 < view.crop_scale[0] <= view.crop_scale[1] <= 1, f"augment.{name}.crop_scale",
             view.crop_scale, "must be 0 < low <= high <= 1")
        need(0 < view.crop_ratio[0] <= view.crop_ratio[1], f"augment.{name}.crop_ratio",
             view.crop_ratio, "must be 0 < low <= high")
        need(0 < view.blur_sigma[0] <= view.blur_sigma[1], f"augment.{name}.blur_sigma",
             view.blur_sigma, "must be 0 < low <= high")
    cfg.augment.size = d.image_size
