"""Run configuration: typed dataclasses, read from YAML, overridden from the command line.

    cfg = load_config("configs/cifar10.yaml", ["--train.epochs", "10", "--optim.base_lr", "1.0"])

Every key is checked before any work starts: an unknown key is named with the valid ones
listed, a wrong type or an out-of-range value is named with what is expected.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from byol.core.augment import AugmentConfig
from byol.core.heads import HEAD_BIASES
from byol.core.model import TOKEN_POOLS
from byol.core.optim import OPTIMIZERS


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
    image_size: int = 32  # network input (the random resized crop's output); unset: the images' typical shorter side (16-224)
    load_size: Union[int, None] = None  # images are decoded to this size (default image_size); large_images full: the bound on the shorter side (None: none)
    channels: int = 3  # 3 (RGB) or 1 (grayscale networks)
    in_memory: Union[bool, None] = None  # decode all once into RAM; None: yes below 300k images
    large_images: str = "resize"  # resize (centre square) | crop (random load_size crops, e.g. DIV2K) | full (each view's crop from the whole image, in the data workers; streamed data)
    eval_crop: float = 1.0  # evaluation: the centre eval_crop of the image (ImageNet: 0.875 = 224 of 256)
    augment_on: str = "device"  # device (batched, fast) | workers (per image in the Dataset)
    num_workers: int = 2  # DataLoader worker processes for streamed data (in-memory data needs none)
    limit: Union[int, None] = None  # use only N images (a random subset, fixed by train.seed)
    limit_per_class: Union[int, None] = None  # use only the first N images of each class


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # resnet18/34/50, or 'package.module:Class'
    backbone_args: dict = field(default_factory=dict)  # e.g. {stem: cifar, width: 0.5}
    hidden_layer: Union[int, str, None] = None  # a layer name, an index into the children (-2), or None: the output
    init_weights: str = ""  # start from these weights: .safetensors (exported or fine-tuned), .ckpt, or .pt/.pth state dict
    projection_dim: int = 256  # output of projector and predictor (paper: 256)
    projection_hidden_dim: int = 4096  # projector hidden layer (paper: 4096)
    prediction_hidden_dim: int = 4096  # predictor hidden layer (paper: 4096)
    tau_base: float = 0.996  # EMA rate at the first step (paper, Section 3.3)
    tau_final: float = 1.0  # ... at the last, on a cosine; = tau_base keeps it constant
    concat_views: bool = False  # both views through each network as one batch of 2B (mixes their BN statistics)
    head_batchnorm: bool = True  # BatchNorm1d in projector and predictor (paper, Section 3.3)
    head_bias: str = "hidden"  # hidden: bias on each head's first Linear only (DeepMind's) | output: on the last only (lightly's)
    token_pool: str = "mean"  # a transformer's tokens (B, N, D) -> (B, D): mean over the tokens | cls: the first token


@dataclass
class OptimConfig:
    name: str = "lars"  # lars | sgd | adam | adamw
    base_lr: float = 0.2  # learning rate = base_lr x global batch / 256
    weight_decay: float = 1.5e-6  # paper: 1.5e-6 (LARS, ImageNet)
    momentum: float = 0.9  # SGD/LARS momentum
    trust_coefficient: float = 1e-3  # LARS eta (paper: 1e-3)
    clip_lr: bool = False  # LARS: the adaptive rate never exceeds the scheduled one (LARC clipping)
    exclude_bias_and_norm: bool = True  # no weight decay (nor LARS ratio) on biases and norm parameters
    warmup_epochs: float = 10.0  # linear warm-up, then cosine decay to 0 (paper: 10 epochs)
    predictor_lr_scale: float = 1.0  # the predictor's learning rate is this times the rest's
    schedule_per: str = "step"  # step: warm-up and cosine move every optimizer step | epoch: once an epoch (lightly's benchmark)


@dataclass
class TrainConfig:
    epochs: int = 100  # 0: evaluate the untrained network only (kNN, checkpoint to export)
    batch_size: int = 256  # per device
    accumulate: int = 1  # gradient accumulation: micro-batches per optimizer step
    precision: str = "auto"  # auto | 32 | bf16 | 16 (auto: bf16 where the hardware has it)
    channels_last: bool = True  # channels-last memory layout (faster convolutions)
    compile: bool = False  # torch.compile the BYOL forward; falls back to eager if it fails
    data_on_device: Union[bool, None] = None  # in-memory images kept on the GPU; None: yes on a GPU
    seed: int = 0  # initial weights, data order and augmentations
    out_dir: str = "runs/byol"  # run folder: config, checkpoints, logs, report
    checkpoint_every: int = 1  # epochs
    checkpoint_every_steps: int = 0  # also every N optimizer steps, mid-epoch (0: off)
    keep_checkpoints: int = 0  # keep the last K as checkpoints/step-N.ckpt besides last.ckpt
    skip_nonfinite: bool = False  # skip steps whose loss is NaN/inf instead of stopping
    knn_every: int = 5  # epochs; 0 turns the kNN monitor off
    knn_k: int = 200  # kNN monitor: neighbours (Wu et al. 2018: 200)
    knn_temperature: float = 0.1  # kNN monitor: vote weights exp(similarity / T)
    log_every: int = 10  # steps
    accelerator: str = "auto"  # auto | cpu | gpu (Lightning accelerator)
    devices: int = 1  # per node; >1 trains with DDP (torchrun and SLURM set ranks themselves)
    num_nodes: int = 1  # machines; train.devices processes on each
    sync_batchnorm: bool = True  # SyncBatchNorm across ranks when more than one process trains
    threads: Union[int, None] = None  # CPU threads for torch (default: torch's choice)


@dataclass
class LogConfig:
    csv: bool = True  # csv/metrics.csv in the run folder
    tensorboard: bool = True  # tensorboard/ in the run folder
    progress: bool = True  # a progress bar on a terminal; plain lines every log.progress_every seconds otherwise
    progress_every: float = 30.0  # seconds between plain progress lines (output to a file: nohup, SLURM)
    mlflow_uri: Union[str, None] = None  # MLflow tracking URI (pip install 'byol[mlflow]')
    mlflow_experiment: str = "byol_experiment"  # MLflow experiment name
    mlflow_run_id: Union[str, None] = None  # log into this existing MLflow run
    report: bool = True  # plots and report.html in the run folder at the end (byol report RUN_DIR)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    # settings that depend on the run's length: {epochs: {"optim.base_lr": 0.3, ...}}; the
    # entry for train.epochs (else the nearest on a log scale) is applied after the config
    # files and before the command line (see apply_epoch_preset)
    epoch_presets: dict = field(default_factory=dict)  # {epochs: {key: value}}, picked by train.epochs

    def __post_init__(self):
        self.given: dict[str, str] = {}  # dotted key -> the file, preset or command line that set it
        self.notes: list[str] = []  # what was decided for the user (presets, data-aware defaults)


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


def _apply(obj, values: dict, prefix: str, source: str, given: dict | None = None, keep=(),
           kept: list | None = None):
    """Set the keys of `values` on the dataclass `obj`; `given` records who set each key.
    Dotted keys in `keep` are left as they are (what the user set, when a preset is applied),
    and listed in `kept`."""
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
            _apply(current, v, f"{key}.", source, given, keep, kept)
        elif key in keep:
            if kept is not None:
                kept.append(key)
        else:
            setattr(obj, k, _coerce(v, hints[k], f"{source}: {key}"))
            if given is not None:
                given[key] = source


def _nested(dotted: dict) -> dict:
    """{"optim.base_lr": 0.3} -> {"optim": {"base_lr": 0.3}}."""
    out: dict = {}
    for key, value in dotted.items():
        node = out
        parts = str(key).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def apply_epoch_preset(cfg: Config, given: dict) -> int | None:
    """Apply the entry of cfg.epoch_presets for cfg.train.epochs, or for the nearest epoch count
    on a log scale, to every key that no file or command line set (the keys of `given`).
    Returns the preset's epoch count (None without presets); its keys are recorded in `given`
    with the preset as their source, and the choice in cfg.notes.

    So the order is: defaults < epoch preset < each config file in turn < command line.
    """
    if not cfg.epoch_presets:
        return None
    source = given.get("epoch_presets", "config")
    try:
        table = {int(k): v for k, v in cfg.epoch_presets.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: epoch_presets keys must be epoch counts, got "
                          f"{list(cfg.epoch_presets)}") from None
    if any(k <= 0 for k in table) or not all(isinstance(v, dict) for v in table.values()):
        raise ConfigError(f"{source}: epoch_presets must map positive epoch counts to settings "
                          "like {optim.base_lr: 0.3}")
    epochs = cfg.train.epochs
    chosen = min(table, key=lambda k: (abs(math.log(k / max(epochs, 1))), k))
    kept: list[str] = []
    _apply(cfg, _nested(table[chosen]), "", f"{source}: epoch_presets[{chosen}]", given, set(given), kept)
    cfg.notes.append(f"epoch_presets: the settings for {chosen} epochs"
                     + ("" if chosen == epochs else f" (the nearest preset to {epochs})")
                     + (f"; kept as set: {', '.join(sorted(kept))}" if kept else ""))
    return chosen


def from_dict(values: dict | None, source: str = "config") -> Config:
    """A Config from nested values (a run's config.yaml, `BYOLModule(net, dict)`), with the
    epoch preset applied as load_config applies it: to the keys `values` leaves out."""
    cfg = Config()
    given: dict[str, str] = {}
    _apply(cfg, values or {}, "", source, given)
    apply_epoch_preset(cfg, given)
    validate(cfg, source, given)
    cfg.given = given
    return cfg


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


def _plain(x):
    """Tuples as lists, recursively: what YAML writes and reads back."""
    if isinstance(x, (tuple, list)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def to_dict(cfg: Config) -> dict:
    return _plain(dataclasses.asdict(cfg))


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
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"command line: --{key} {raw!r} is not valid YAML ({yaml_problem(e)}); quote it "
                              "and close every bracket, e.g. --model.backbone_args '{width: 0.25}'") from None
    return out


def yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: where (line and column, counted from 1) and what."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return (f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else "") + problem


def load_config(path: str | Path | list | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the entry of `epoch_presets` for the run's epochs, then each YAML file in
    order (one path, a packaged recipe's name, or a list), then the overrides: a preset never
    changes a key that a file or the command line set.

    `cfg.given` holds the dotted keys that a file, a preset or the command line set, each with
    its source (the rest are defaults, which `adapt_to_data` may change); `cfg.notes` says
    which preset was applied.
    """
    cfg = Config()
    given: dict[str, str] = {}
    source = "config"
    for p in ([] if path is None else path if isinstance(path, (list, tuple)) else [path]):
        p = resolve_config_path(p)
        try:
            values = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML at {yaml_problem(e)}") from None
        source = str(p)
        _apply(cfg, values, "", source, given)
    if overrides:
        _apply(cfg, parse_overrides(overrides), "", "command line", given)
    apply_epoch_preset(cfg, given)
    validate(cfg, source, given)
    cfg.given = given
    return cfg


def _field_comments(cls) -> dict[str, str]:
    """{field name: the comment on its line} from the dataclass's source."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    node = ast.parse(source).body[0]
    return {stmt.target.id: comments.get(stmt.lineno, "") for stmt in node.body
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)}


def describe_keys(obj=None, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) of every config key, from the dataclasses themselves
    (defaults from a fresh Config, descriptions from the comment on each field's line)."""
    obj = Config() if obj is None else obj
    rows = []
    comments = _field_comments(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            rows += describe_keys(value, f"{prefix}{f.name}.")
        else:
            shown = yaml.safe_dump(to_dict(value) if dataclasses.is_dataclass(value) else _plain(value),
                                   default_flow_style=True).strip().removesuffix("...").strip()
            rows.append((f"{prefix}{f.name}", shown, comments.get(f.name, "")))
    return rows


SECTIONS = {"data": "what to train on, and the held-out images of the kNN monitor",
            "model": "the network, where its features are taken, the heads and the EMA target",
            "augment": "the two views (the paper's Table 6; view1 and view2 each)",
            "optim": "optimiser and learning-rate schedule",
            "train": "length, batch, devices, precision, checkpoints, the kNN monitor",
            "log": "what the run folder gets, progress, MLflow",
            "epoch_presets": "settings picked by the run's length (train.epochs)"}


def keys_help(cfg: Config | None = None, title: str = "defaults") -> str:
    """The text `byol pretrain --help` ends with: every key, grouped by section under a heading,
    with its value in `cfg` (the defaults, or what the --config files give) and what it does."""
    rows = describe_keys(cfg)
    width = min(44, max(len(k) + len(d) for k, d, _ in rows) + 4)
    lines = [f"config keys (in a YAML file, or --section.key VALUE on the command line; {title} shown):"]
    section = None
    for key, value, text in rows:
        if key.split(".")[0] != section:
            section = key.split(".")[0]
            lines += ["", f"{section}: {SECTIONS.get(section, '')}".rstrip(": ")]
        lines.append(f"  {key} = {value}".ljust(width + 2) + f"  {text}".rstrip())
    return "\n".join(lines)


def describe_config(cfg: Config) -> str:
    """The resolved settings as YAML, each key that a file, preset or the command line set
    followed by where it came from (the rest are defaults or data-aware choices, in cfg.notes)."""
    lines = []
    for key, value, _ in describe_keys(cfg):
        source = cfg.given.get(key)
        lines.append(f"{key}: {value}" + (f"  # {source}" if source else ""))
    return "\n".join(lines)


SMALL_DATA_IMAGES = 10_000


def adapt_to_data(cfg: Config, n_images: int, grayscale: bool) -> list[str]:
    """Data-aware defaults: change the augmentation keys that no file, preset or command-line
    value set (cfg.given), where the data makes the paper's ImageNet default a poor fit.
    Returns one line per change (and a note for small data sets), also kept in cfg.notes.

    - Images below 40 px: no Gaussian blur. The blur kernel is about 10 % of the side
      (paper, Appendix B), 3x3 at these sizes, so with sigma up to 2 it is a near-box
      filter on every view-1 image; lightly's CIFAR-10 benchmark and solo-learn's CIFAR
      recipe switch it off too. Measured at 32 px: BENCHMARKS.md, "How the recommended
      recipe was chosen".
    - Grayscale images: saturation, hue and colour dropping do nothing to a grey image;
      they are set to 0 so that config.yaml records what really happens.
    """
    notes = []

    def default(key: str, value) -> None:
        section, *path = key.split(".")
        obj = getattr(cfg, section)
        for part in path[:-1]:
            obj = getattr(obj, part)
        if key in cfg.given or getattr(obj, path[-1]) == value:
            return
        notes.append(f"{key}: {getattr(obj, path[-1])} -> {value}")
        setattr(obj, path[-1], value)

    if cfg.data.image_size < 40:
        for view in ("view1", "view2"):
            default(f"augment.{view}.blur_p", 0.0)
    if grayscale:
        for view in ("view1", "view2"):
            for k in ("saturation", "hue", "grayscale_p"):
                default(f"augment.{view}.{k}", 0.0)
    if notes:
        why = []
        if cfg.data.image_size < 40:
            why.append(f"{cfg.data.image_size}-px images")
        if grayscale:
            why.append("grayscale images")
        notes = [f"data-aware defaults for {' and '.join(why)}: " + "; ".join(notes)]
    if 0 < n_images < SMALL_DATA_IMAGES and cfg.train.epochs > 0:
        steps = n_images // max(1, cfg.train.batch_size) * cfg.train.epochs
        notes.append(f"{n_images} training images, {cfg.train.epochs} epochs ({steps} steps): BYOL usually needs "
                     f"more images or more epochs (the paper: 1.28 million images, 300-1000 epochs; CIFAR-10 recipes: "
                     f"50,000 images, 200-1000 epochs). Check the kNN verdict at the end of the run.")
    cfg.notes = [*getattr(cfg, "notes", []), *notes]
    return notes


def validate(cfg: Config, source: str = "config", given: dict | None = None) -> None:
    """Ranges and choices, checked before any work starts. An error names where the value
    came from (`given`: key -> its file or the command line; `source` for the rest)."""
    def need(ok: bool, key: str, value, what: str):
        if not ok:
            origin = (given or {}).get(key, source)
            raise ConfigError(f"{origin}: {key} = {value!r}: {what}")

    d, m, o, t, a = cfg.data, cfg.model, cfg.optim, cfg.train, cfg.augment
    from byol.data.datasets import DATASETS

    need(d.dataset in ("folder", "video", "shards", *DATASETS), "data.dataset", d.dataset,
         f"must be folder, video, shards, {', '.join(DATASETS)}")
    need(d.max_frame_gap >= 1, "data.max_frame_gap", d.max_frame_gap, "must be >= 1")
    need(d.image_size >= 8, "data.image_size", d.image_size, "must be at least 8")
    need(d.load_size is None or d.load_size >= d.image_size // 2, "data.load_size", d.load_size,
         "must be at least half of data.image_size")
    need(d.channels in (1, 3), "data.channels", d.channels, "must be 1 or 3")
    need(d.large_images in ("resize", "crop", "full"), "data.large_images", d.large_images,
         "must be resize, crop or full")
    need(not (d.large_images == "full" and d.in_memory), "data.in_memory", d.in_memory,
         "large_images: full streams the images; set data.in_memory: false")
    need(d.large_images != "full" or d.dataset in ("folder", "shards"), "data.large_images", d.large_images,
         f"full reads image folders and shards; {d.dataset} images are read as resize or crop")
    need(0.0 < d.eval_crop <= 1.0, "data.eval_crop", d.eval_crop, "must be in (0, 1]")
    need(d.augment_on in ("device", "workers"), "data.augment_on", d.augment_on, "must be device or workers")
    need(0.0 <= d.val_fraction < 1.0, "data.val_fraction", d.val_fraction, "must be in [0, 1)")
    need(d.num_workers >= 0, "data.num_workers", d.num_workers, "must be >= 0")
    need(d.limit is None or d.limit > 0, "data.limit", d.limit, "must be positive")
    need(d.limit_per_class is None or d.limit_per_class > 0, "data.limit_per_class", d.limit_per_class,
         "must be positive")
    need(0.0 <= m.tau_base <= 1.0, "model.tau_base", m.tau_base, "must be in [0, 1]")
    need(m.tau_base <= m.tau_final <= 1.0, "model.tau_final", m.tau_final, "must be in [model.tau_base, 1]")
    for k in ("projection_dim", "projection_hidden_dim", "prediction_hidden_dim"):
        need(getattr(m, k) > 0, f"model.{k}", getattr(m, k), "must be positive")
    need(o.name in OPTIMIZERS, "optim.name", o.name, f"must be one of {', '.join(OPTIMIZERS)}")
    need(o.base_lr > 0, "optim.base_lr", o.base_lr, "must be positive")
    need(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    need(o.warmup_epochs >= 0, "optim.warmup_epochs", o.warmup_epochs, "must be >= 0")
    need(o.schedule_per in ("step", "epoch"), "optim.schedule_per", o.schedule_per, "must be step or epoch")
    need(m.head_bias in HEAD_BIASES, "model.head_bias", m.head_bias, f"must be {' or '.join(HEAD_BIASES)}")
    need(m.token_pool in TOKEN_POOLS, "model.token_pool", m.token_pool, f"must be {' or '.join(TOKEN_POOLS)}")
    need(o.predictor_lr_scale > 0, "optim.predictor_lr_scale", o.predictor_lr_scale, "must be positive")
    need(t.epochs >= 0, "train.epochs", t.epochs, "must be >= 0 (0: evaluate the untrained network only)")
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
    need(a.crop_sampling in ("rejection", "clamp"), "augment.crop_sampling", a.crop_sampling,
         "must be rejection or clamp")
    need(a.interpolation in ("bilinear", "bicubic", "nearest"), "augment.interpolation", a.interpolation,
         "must be bilinear, bicubic or nearest")
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
        need(view.brightness_mode in ("add", "scale"), f"augment.{name}.brightness_mode", view.brightness_mode,
             "must be add or scale")
        need(view.contrast_mode in ("channel", "gray"), f"augment.{name}.contrast_mode", view.contrast_mode,
             "must be channel or gray")
    cfg.augment.size = d.image_size
