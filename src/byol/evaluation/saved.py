"""Evaluating saved weights: a pretraining checkpoint (.ckpt) or an exported .safetensors file,
read with the settings it was trained with (image size, channels, normalisation, hidden
layer, evaluation crop) unless told otherwise.

    from byol.evaluation.saved import evaluate, embed
    record = evaluate("runs/x/checkpoints/last.ckpt", "knn", train="data/train", test="data/test")
    features, files = embed("backbone.safetensors", "data/unlabeled")
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from byol.checkpoint import (
    READER_SETTINGS,
    checkpoint_config,
    load_backbone,
    load_checkpoint,
    read_export_metadata,
    reader_settings,
)
from byol.config import ConfigError
from byol.core.augment import IMAGENET_MEAN, IMAGENET_STD
from byol.core.model import evaluating, feature_extractor, feature_maps
from byol.data.bands import Pixels
from byol.data.datasets import load_dataset, match_channels
from byol.data.image_sets import MemoryImages, WholeImageCrops, decode_to_memory
from byol.data.listing import DataError, list_images
from byol.data.splits import balanced_split, match_classes
from byol.evaluation.protocols import (
    ClassifierSettings,
    Inputs,
    crop_flip,
    evaluation_batches,
    extract_features,
    knn_accuracy,
    linear_probe,
    logistic_regression,
    train_classifier,
)

PROTOCOLS = ("knn", "linear", "linear-aug", "logistic", "finetune")
PIXEL_SETTINGS = ("pixels", "bands", "layout", "window", "clip")  # Reader.pixels holds them
TRAIN_CROPS = ("square", "whole")


@dataclass(frozen=True)
class Reader:
    """A saved backbone as a feature extractor, with how to feed it."""
    net: nn.Module
    mean: tuple
    std: tuple
    image_size: int
    crop: float  # evaluation centre crop: decode at image_size / crop, then crop image_size
    channels: int
    train_crops: str = "square"  # linear-aug/finetune training crops: from the decoded square, or "whole" image
    bound: int | None = None  # with train_crops "whole": the bound on the shorter side (data.load_size)
    origin: dict = field(default_factory=dict)  # the saved settings the fields above leave out (backbone, hidden layer, ...)
    pixels: Pixels = field(default_factory=Pixels)  # how each file's values are read, as training read them

    @property
    def settings(self) -> dict:
        """The reader settings in force, keyed as export metadata is (READER_SETTINGS)."""
        return {**self.origin, "image_size": self.image_size, "channels": self.channels, "mean": list(self.mean),
                "std": list(self.std), "eval_crop": self.crop, **self.pixels.settings()}

    @property
    def inputs(self) -> Inputs:
        return Inputs(self.mean, self.std, self.image_size, self.crop, self.pixels.kind)

    def features(self, images: torch.Tensor, device: str | None = None) -> torch.Tensor:
        return extract_features(self.net, images, self.mean, self.std, self.image_size, device=device,
                                crop=self.crop, pixels=self.pixels.kind)


def load_reader(checkpoint: str, backbone: str | None = None, backbone_args: dict | None = None,
                hidden_layer: str | int | None = None, image_size: int | None = None,
                channels: int | None = None, train_crops: str | None = None) -> Reader:
    """The Reader of a .ckpt or .safetensors file: the run's own settings (a checkpoint's config,
    an export's metadata) where the arguments do not give them; 224 px and ImageNet
    normalisation when neither does. Training crops of linear-aug and finetune come from the
    whole image where pretraining took them so (data.large_images 'full'), unless
    `train_crops` says "whole" or "square"."""
    net = load_backbone(checkpoint, backbone, backbone_args)
    if str(checkpoint).endswith(".safetensors"):
        saved = read_export_metadata(checkpoint)
    else:
        saved = reader_settings(checkpoint_config(load_checkpoint(checkpoint)))
    layer = hidden_layer if hidden_layer is not None else saved.get("hidden_layer")
    if isinstance(layer, str) and layer.lstrip("-").isdigit():
        layer = int(layer)
    if train_crops not in (None, *TRAIN_CROPS):
        raise ConfigError(f"train crops {train_crops!r}: choose {' or '.join(TRAIN_CROPS)}")
    crops = train_crops or ("whole" if saved.get("large_images") == "full" else "square")
    origin = {**{k: v for k, v in saved.items() if k in READER_SETTINGS and k not in PIXEL_SETTINGS},
              "backbone": backbone or saved.get("backbone", ""),
              "backbone_args": backbone_args if backbone_args is not None else saved.get("backbone_args", {}),
              "hidden_layer": layer}
    channels = channels or saved.get("channels") or 3
    # one value per input channel, as training normalised (core.augment.normalize takes mean[:C])
    mean, std = (tuple(saved.get("mean") or IMAGENET_MEAN)[:channels], tuple(saved.get("std") or IMAGENET_STD)[:channels])
    return Reader(feature_extractor(net, layer, saved.get("token_pool") or "mean"), mean, std,
                  image_size or saved.get("image_size") or 224, saved.get("eval_crop", 1.0), channels, crops,
                  saved.get("load_size") if crops == "whole" else None, origin, Pixels.of(saved))


def labeled_sets(size: int, channels: int, train: str | None = None, test: str | None = None,
                 dataset: str | None = None, data: str | None = None, pixels: Pixels | None = None
                 ) -> tuple[MemoryImages, MemoryImages]:
    """(train, test) from labeled folders/tars `train` and `test`, or a standard data set
    `dataset` whose files are in `data`, decoded at `size` (shorter side, centre square), their
    values read as `pixels` say (8-bit pictures of 1 or 3 channels, or full precision)."""
    pixels = pixels or Pixels()
    if not pixels.full:
        channels = 1 if channels == 1 else 3
    if dataset and dataset != "folder":
        if not data:
            raise ConfigError(f"--dataset {dataset} needs --data PATH (where its files are)")
        return (match_channels(load_dataset(dataset, data, "train"), channels),
                match_channels(load_dataset(dataset, data, "test"), channels))
    if not (train and test):
        raise ConfigError("give --train and --test (labeled folders or tars), or --dataset NAME --data PATH")
    train_set = decode_to_memory(list_images(train), size, channels, pixels=pixels)
    if not train_set.classes:
        raise DataError(f"{train!r} has no class sub-folders: evaluation needs labels")
    return train_set, match_classes(decode_to_memory(list_images(test), size, channels, pixels=pixels),
                                    train_set.classes, test)


def whole_image_crops(train: str, r: Reader) -> WholeImageCrops:
    """The labeled folder `train` as crop + flip training crops of each whole image, shorter side
    bounded by r.bound (see WholeImageCrops)."""
    if Path(train).is_file():
        raise ConfigError(f"--train {train!r} is an archive: crops from the whole image read a folder of images; "
                          "unpack it, or give --train-crops square")
    images = list_images(train)
    if not images.classes:
        raise DataError(f"{train!r} has no class sub-folders: evaluation needs labels")
    return WholeImageCrops(images, r.image_size, r.bound, 1 if r.channels == 1 else 3, crop_flip())


@dataclass(frozen=True)
class EvalSettings:
    """The settings of `byol evaluate`; each protocol reads its own. knn: k neighbours, votes
    exp(similarity / temperature); linear, linear-aug, finetune: epochs, lr, batch_size;
    finetune: bn_momentum (see ClassifierSettings); all: a class-balanced label_fraction of the
    training images (chosen with seed); linear-aug, finetune: workers decode whole-image crops
    (None: up to 8)."""
    k: int | None = None  # None: KNN_K, or a tenth of a smaller bank (knn_neighbours)
    temperature: float = 0.1
    epochs: int = 100
    lr: float = 0.1
    batch_size: int = 256
    label_fraction: float = 1.0
    bn_momentum: float | None = None
    seed: int = 0
    workers: int | None = None

    def __post_init__(self):
        """Each setting within its range, or one ConfigError naming it (as `byol evaluate` spells it)."""
        import math

        rules = {"k": (self.k, 1, None, "-k"), "temperature": (self.temperature, 0, None, "--temperature"),
                 "epochs": (self.epochs, 1, None, "--epochs"), "lr": (self.lr, 0, None, "--lr"),
                 "batch_size": (self.batch_size, 1, None, "--batch-size"),
                 "label_fraction": (self.label_fraction, 0, 1, "--label-fraction"),
                 "bn_momentum": (self.bn_momentum, 0, 1, "--bn-momentum"), "seed": (self.seed, 0, None, "--seed"),
                 "workers": (self.workers, 0, None, "--workers")}
        exclusive = {"temperature", "lr", "label_fraction"}  # above 0, not at it
        for name, (value, low, high, flag) in rules.items():
            if value is None:
                continue
            bad = (not math.isfinite(value) or (value <= low if name in exclusive else value < low)
                   or (high is not None and value > high))
            if bad:
                span = (f"{'above' if name in exclusive else 'at least'} {low}"
                        + (f" and at most {high}" if high is not None else ""))
                raise ConfigError(f"evaluate: {flag} {value} is out of range: it must be {span}")


def eval_settings(values: dict) -> EvalSettings:
    """EvalSettings from a dict; an unknown key is one ConfigError that lists the valid ones."""
    names = [f.name for f in fields(EvalSettings)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"evaluate settings: unknown key {unknown[0]!r}; valid keys: {', '.join(names)}")
    return EvalSettings(**values)


def evaluate(checkpoint: str, protocol: str, train: str | None = None, test: str | None = None,
             dataset: str | None = None, data: str | None = None, reader: Reader | None = None,
             settings: EvalSettings | dict | None = None, save_model: str | None = None) -> dict:
    """Evaluate a frozen (or, for finetune, trained) backbone on labeled data; returns the
    record `byol evaluate` prints: protocol, data, settings, top1 and top5 on the test set.
    The data: `train` and `test` folders, or a named `dataset` in `data`. linear-aug and
    finetune train on crops of each whole image of a `train` folder where the reader says so
    (Reader.train_crops "whole"); else on crops of the decoded square images in memory.
    settings: an EvalSettings, or a dict of its fields ({"k": 10})."""
    s = settings if isinstance(settings, EvalSettings) else eval_settings(settings or {})
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    r = reader or load_reader(checkpoint)
    size = round(r.image_size / r.crop)
    whole = protocol in ("linear-aug", "finetune") and r.train_crops == "whole" and not (dataset and dataset != "folder")
    if whole:
        if not (train and test):
            raise ConfigError("give --train and --test (labeled folders)")
        train_set = whole_image_crops(train, r)
        test_set = match_classes(decode_to_memory(list_images(test), size, 1 if r.channels == 1 else 3),
                                 train_set.classes, test)
    else:
        train_set, test_set = labeled_sets(size, r.channels, train, test, dataset, data, r.pixels)
    record: dict = {"image_size": r.image_size, "eval_crop": r.crop}
    if protocol in ("linear-aug", "finetune"):
        record["train_crops"] = "whole" if whole else "square"
        if whole:
            record["load_size"] = r.bound
    if s.label_fraction < 1.0:  # semi-supervised: a class-balanced subset, seed recorded
        _, keep = balanced_split(train_set.labels, s.label_fraction, s.seed)
        train_set = train_set.subset(keep)
        record.update(label_fraction=s.label_fraction, subset_seed=s.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if protocol in ("knn", "linear", "logistic"):
        ftr, fte = r.features(train_set.images, device), r.features(test_set.images, device)
        if protocol == "knn":
            k, why = knn_neighbours(s.k, len(train_set))
            result = knn_accuracy(ftr, train_set.labels, fte, test_set.labels, k, s.temperature)
            result.update(k=k, k_reason=why)
            if r.origin.get("backbone"):  # the baseline: the same network untrained
                untrained = untrained_reader(r, seed=s.seed)
                result.update(untrained_top1=knn_accuracy(
                    untrained.features(train_set.images, device), train_set.labels,
                    untrained.features(test_set.images, device), test_set.labels, k, s.temperature)["top1"],
                    untrained_network=f"the same architecture freshly initialised (seed {s.seed})")
        elif protocol == "linear":
            result = linear_probe(ftr, train_set.labels, fte, test_set.labels, epochs=s.epochs, lr=s.lr)
        else:
            result = logistic_regression(ftr, train_set.labels, fte, test_set.labels, seed=s.seed,
                                         classes=train_set.classes)
    else:
        feature_dim = r.features(test_set.images[:2]).shape[1]
        num_classes = max(len(train_set.classes), int(train_set.labels.max()) + 1)
        classifier = ClassifierSettings(epochs=s.epochs, lr=s.lr, batch_size=s.batch_size,
                                        fine_tune=protocol == "finetune", bn_momentum=s.bn_momentum, seed=s.seed,
                                        workers=min(8, os.cpu_count() or 1) if s.workers is None else s.workers)
        result = train_classifier(r.net, num_classes, train_set, test_set, r.inputs, classifier, device=device,
                                  save_to=save_model,
                                  metadata={**r.settings, "classes": list(train_set.classes), "protocol": protocol,
                                            "head": f"linear {feature_dim} -> {num_classes} on the pooled hidden layer"})
        if save_model:
            record["saved_model"] = save_model
    top1, top5 = result.pop("top1"), result.pop("top5")
    record.update(result)
    return {"protocol": protocol, "checkpoint": str(checkpoint),
            "dataset": dataset if dataset and dataset != "folder" else train,
            "split": "test", "test_data": test or data, "train_images": len(train_set),
            "test_images": len(test_set), "settings": record, "top1": top1, "top5": top5}


KNN_K = 200  # neighbours voting (Wu et al. 2018: 200 of a 50,000-image bank)


def knn_neighbours(asked: int | None, bank: int) -> tuple[int, str]:
    """(k, why): the k asked for, said where it reaches the bank (every query's neighbours are
    then all of it: a similarity-weighted vote of the whole bank); else KNN_K, or a tenth of a
    bank smaller than ten times that."""
    if asked is not None:
        if asked >= bank:
            return asked, (f"-k {asked} reaches the {bank} labeled training images: every query's neighbours are the "
                           "whole bank; give a smaller -k (a tenth of the bank) or more labeled images")
        return asked, f"-k {asked}"
    k = min(KNN_K, max(1, bank // 10))
    return k, (f"{KNN_K}, the field's standard" if k == KNN_K else
               f"a tenth of the {bank} labeled training images ({KNN_K} would be most of them; -k to choose)")


def untrained_reader(r: Reader, seed: int = 0) -> Reader:
    """The reader's network freshly initialised (torch seed `seed`), read with the same settings:
    the untrained baseline a pretrained network's figure is set beside."""
    import dataclasses

    from byol.core.backbones import build_backbone

    o = r.origin
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build_backbone(o["backbone"], **(o.get("backbone_args") or {}))
    return dataclasses.replace(r, net=feature_extractor(net, o.get("hidden_layer"), o.get("token_pool") or "mean"))


def describe_result(record: dict) -> str:
    """The readable line of an evaluation (its JSON is for scripts): the figure, and for kNN the
    untrained network's beside it and the k used."""
    s = record["settings"]
    line = (f"{record['protocol']} top-1 {100 * record['top1']:.2f}% (top-5 {100 * record['top5']:.2f}%) on "
            f"{record['test_images']} test images, {record['train_images']} labeled training images")
    if "untrained_top1" in s:
        line += (f"; untrained: {100 * s['untrained_top1']:.2f}% ({s['untrained_network']}); k {s['k']}: "
                 f"{s['k_reason']}")
    return line


def embed(checkpoint: str, data: str, reader: Reader | None = None) -> tuple[torch.Tensor, list[str]]:
    """Features of every readable image of the folder or tar `data` (N, D), and the file of
    each row (paths inside `data`, in listed order; unreadable files are left out)."""
    r = reader or load_reader(checkpoint)
    images = list_images(data)
    mem = decode_to_memory(images, round(r.image_size / r.crop), r.channels, pixels=r.pixels)
    skipped = set(mem.skipped)
    files = [item for item in images.items if f"{images.root}/{item}" not in skipped]
    return r.features(mem.images), files


def embed_maps(checkpoint: str, data: str, layers: list[str], reader: Reader | None = None
               ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The outputs of the named layers (feature_maps: not pooled, e.g. (N, C, H, W) for a
    detection or segmentation head) for every readable image of `data`, prepared as embed
    prepares them, and the file of each row."""
    r = reader or load_reader(checkpoint)
    images = list_images(data)
    mem = decode_to_memory(images, round(r.image_size / r.crop), r.channels, pixels=r.pixels)
    skipped = set(mem.skipped)
    files = [item for item in images.items if f"{images.root}/{item}" not in skipped]
    net = r.net.net  # the backbone itself: feature_extractor's Encoder pools
    parts: dict[str, list[torch.Tensor]] = {}
    with evaluating(net), torch.no_grad():
        for x in evaluation_batches(mem.images, r.mean, r.std, r.image_size, batch_size=64, crop=r.crop,
                                    pixels=r.pixels.kind):
            for name, out in feature_maps(net, layers, x).items():
                parts.setdefault(name, []).append(out.float())
    return {name: torch.cat(chunks) for name, chunks in parts.items()}, files


def log_evaluation_to_mlflow(record: dict, uri: str, experiment: str, parent_run_id: str | None) -> None:
    """An evaluation as an MLflow run, nested under the pretraining run when its id is given."""
    from byol.tracking import check_tracking_uri

    check_tracking_uri(uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    name = f"evaluate-{record['protocol']}"
    params = {k: v for k, v in record["settings"].items() if not isinstance(v, dict)}
    params.update(protocol=record["protocol"], checkpoint=record["checkpoint"], dataset=record["dataset"])
    with contextlib.ExitStack() as runs:
        if parent_run_id:
            runs.enter_context(mlflow.start_run(run_id=parent_run_id))
        runs.enter_context(mlflow.start_run(run_name=name, nested=bool(parent_run_id)))
        mlflow.log_params(params)
        mlflow.log_metrics({"top1": record["top1"], "top5": record["top5"]})
