"""The training data a config asks for: the loader, the kNN monitor's labeled bank and test
set, and the number of training images. Every source (folders and archives, named data sets,
shards, video frames) ends in one of two loaders: a ResumableLoader over a map-style data set
(exact mid-epoch resume) or a DataLoader over a self-splitting stream (shards)."""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from dataclasses import dataclass, replace

import torch

from byol.config import Config, ConfigError, adapt_to_data, updated
from byol.core.augment import TwoViewTransform
from byol.data.images import (DECODE_ERRORS, GRAYSCALE_SAMPLE, AugmentedImages, BatchIndices, DataError, ImageList,
                              MemoryImages, StreamImages, VideoFramePairs, decode_to_memory, first_per_class,
                              list_images, looks_grayscale, match_classes, random_subset, split_held_out)
from byol.data.batch import already_batched, collate
from byol.data.loader import ResumableLoader, ShardedSampler
from byol import pretrained
from byol.pretrained import is_named

MEMORY_LIMIT_IMAGES = 300_000
WORKER_TIMEOUT_S = 600  # a data worker silent this long is reported, not waited on forever


@dataclass
class TrainingData:
    """What pretraining reads: the loader, the kNN monitor's labeled bank and test set (both or
    neither), the number of training images, and the uint8 images to keep on the training device
    (then the loader yields indices into them) or None."""
    loader: torch.utils.data.DataLoader
    bank: MemoryImages | None
    test: MemoryImages | None
    images: int
    resident: torch.Tensor | None = None
    identity: dict | None = None  # see data_identity: what a resumed run must find again
    grayscale: bool = False  # the data-aware decision (looks_grayscale) the run was built with


def data_identity(names: list[str] | None = None, images: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None, count: int | None = None) -> dict:
    """The training data's identity, kept in each checkpoint: how many images and a fingerprint
    of them: of their file names (a folder, a video, shards: renaming, adding or removing a file
    changes it), or of the decoded images (a standard data set: every 64th image's pixels and
    all labels)."""
    h = hashlib.sha256()
    if names is not None:
        h.update("\n".join(names).encode())
        count = len(names) if count is None else count
    if images is not None:
        h.update(images[::64].contiguous().numpy().tobytes())
        count = len(images) if count is None else count
    if labels is not None:
        h.update(labels.contiguous().numpy().tobytes())
    return {"images": count, "fingerprint": h.hexdigest()[:16]}


IMAGE_SIZE_RANGE = (16, 224)  # a size taken from the data is kept within these (224: the paper's)
NAMED_SIZES = {"cifar10": 32, "cifar100": 32, "stl10": 96, "mnist": 28, "emnist": 28}
SIZE_SAMPLE = 64  # images whose headers are read to find the typical size


def listing(cfg: Config) -> ImageList | None:
    """The images of a folder or .tar (data.dataset folder), listed once for the whole start-up;
    None for the other sources."""
    return list_images(cfg.data.path) if cfg.data.dataset == "folder" and cfg.data.path else None


def typical_size(cfg: Config, listed: ImageList | None = None) -> int | None:
    """The median shorter side of the training images (the headers of up to SIZE_SAMPLE of a
    folder's `listed` images, or a named data set's size); None where it cannot be told cheaply
    (archives, shards, video)."""
    d = cfg.data
    if d.dataset != "folder":
        return NAMED_SIZES.get(d.dataset.split("-")[0])
    if not (d.path and os.path.isdir(d.path)):
        return None
    from PIL import Image

    images = random_subset(listed if listed is not None else list_images(d.path), SIZE_SAMPLE, 0)
    sides = []
    for item in images.items:
        try:
            with Image.open(os.path.join(images.root, item)) as im:
                sides.append(min(im.size))
        except DECODE_ERRORS:
            continue  # unreadable or a decompression bomb: said (and skipped) when the images are decoded
    return sorted(sides)[len(sides) // 2] if sides else None


def size_from_data(cfg: Config, listed: ImageList | None = None) -> tuple[Config, list[str]]:
    """data.image_size from the images when no file or command line set it: their typical
    shorter side, kept within IMAGE_SIZE_RANGE; a line when a size that was set is far below the
    images' own (they are shrunk before cropping). Returns the new Config and the lines said
    (also in its notes). `listed`: the folder's images, if listing() has them already."""
    d = cfg.data
    typical = typical_size(cfg, listed)
    if typical is None:
        return cfg, []
    if "data.image_size" not in cfg.given:
        size = min(max(typical, IMAGE_SIZE_RANGE[0]), IMAGE_SIZE_RANGE[1])
        capped = f", kept within {IMAGE_SIZE_RANGE[0]}-{IMAGE_SIZE_RANGE[1]}" if size != typical else ""
        notes = [f"data.image_size {size}: the images' typical shorter side is {typical} px{capped} (set "
                 "data.image_size to choose another)"]
        return updated(cfg, {"data.image_size": size}, notes), notes
    if typical >= 4 * d.image_size:
        notes = [f"the images' typical shorter side is {typical} px, {typical / d.image_size:.0f}x data.image_size "
                 f"{d.image_size}: each is shrunk to {d.image_size} px before it is cropped (a larger "
                 "data.image_size keeps more detail)"]
        return updated(cfg, {}, notes), notes
    return cfg, []


SMALL_IMAGES = 64  # px: at or below it, the data is CIFAR-sized and gets the recipe measured there (cifar10)
WARMUP_SHARE = 0.1  # with no config named, warm-up is at most this share of the run
SMALL_IMAGE_KEYS = ("model.backbone_args", "model.projection_hidden_dim", "model.prediction_hidden_dim",
                    "model.projection_dim", "model.tau_base", "model.tau_final", "optim.name", "optim.base_lr",
                    "optim.weight_decay", "optim.momentum", "optim.warmup_epochs")
# The cifar10 recipe's epoch presets were chosen on 10,000 CIFAR-10 images at batch 256: 39
# steps an epoch. A run on other data takes the preset of as many steps, not of as many epochs:
# the target's EMA and the heads' width depend on the number of updates.
RECIPE_STEPS_PER_EPOCH = 10_000 // 256


def training_images(cfg: Config, listed: ImageList | None) -> int | None:
    """About how many images a run trains on, from a folder's listing before anything is
    decoded: less data.val_fraction held out of labeled images, at most data.limit; None
    when there is no listing (named data sets, shards, video)."""
    if listed is None:
        return None
    d = cfg.data
    n = len(listed.items)
    if d.limit_per_class and listed.labeled:
        n = min(n, d.limit_per_class * len(listed.classes))
    if listed.labeled and cfg.train.knn_every > 0 and not d.val_path:
        n = round(n * (1 - d.val_fraction))
    return min(n, d.limit) if d.limit else n


def steps_per_epoch(cfg: Config, images: int) -> int:
    """Optimiser steps per epoch: each process's share of the images in whole batches, over
    the gradient accumulation (the launcher's WORLD_SIZE, else devices x nodes)."""
    t = cfg.train
    world = int(os.environ.get("WORLD_SIZE", t.devices * t.num_nodes))
    return math.ceil(images // world // t.batch_size / t.accumulate)


def preset_epochs(cfg: Config, images: int | None) -> int:
    """The epoch count whose cifar10 preset fits this run: its steps in the recipe's epochs
    (RECIPE_STEPS_PER_EPOCH); the run's own epochs where the image count is not known."""
    if images is None:
        return cfg.train.epochs
    steps = cfg.train.epochs * max(1, steps_per_epoch(cfg, images))
    return max(1, round(steps / RECIPE_STEPS_PER_EPOCH))


def named_a_recipe(cfg: Config) -> bool:
    """Whether a packaged recipe (configs/*.yaml, `--config cifar10`) set any key: a recipe is a
    whole set of choices measured together, and the recipe for the data leaves it as it is. A
    config file of the user's own is read as the command line and a Python caller's dict are:
    the keys it sets are kept, the rest follow the data."""
    from byol.config import RECIPES_DIR

    return any(Path(source.split(": epoch_presets")[0]).parent == RECIPES_DIR for source in cfg.given.values())


def long_warmup_note(cfg: Config) -> list[str]:
    """A line when optim.warmup_epochs is at least the run's length: the learning rate is still
    rising when the run ends, and never decays."""
    o, t = cfg.optim, cfg.train
    if t.epochs == 0 or o.warmup_epochs < t.epochs:
        return []
    return [f"optim.warmup_epochs {o.warmup_epochs:g} (from {cfg.given.get('optim.warmup_epochs', 'the defaults')}) is "
            f"not shorter than the run's {t.epochs} epoch{'s' * (t.epochs > 1)}: the learning rate is still rising "
            "when the run ends and never decays; set optim.warmup_epochs to a tenth of train.epochs or so"]


def recipe_for_data(cfg: Config, images: int | None = None) -> Config:
    """With no config file named, the recipe follows the data and the run's length; a named
    config is never changed, nor is a key set on the command line. Each choice is a note.

    - Images of at most SMALL_IMAGES px: the cifar10 recipe's optimiser, heads and target (its
      epoch preset for this run's number of steps, preset_epochs; `images`: about how many the
      run trains on), and for the built-in ResNet its CIFAR stem (a 3x3
      stride-1 first convolution, no max-pool: the ImageNet stem leaves a 32-px image 8 px
      wide after its first block), unless model.init_weights names published weights (made
      with the ImageNet stem; weights this library pretrained on small images have the CIFAR
      stem). BENCHMARKS.md, "How the recommended recipe was chosen".
      The normalisation stays ImageNet's: the CIFAR statistics describe CIFAR only.
    - Any size: warm-up at most WARMUP_SHARE of the run, so that a short run is never all
      warm-up with a learning rate that never decays.
    """
    if cfg.train.epochs == 0:
        return cfg
    if named_a_recipe(cfg):
        return updated(cfg, {}, long_warmup_note(cfg)) if long_warmup_note(cfg) else cfg
    from byol.config import flatten, load_config, to_dict

    now = flatten(to_dict(cfg), "config")
    changes: dict = {}
    small = cfg.data.image_size <= SMALL_IMAGES
    if small:
        preset = preset_epochs(cfg, images)
        recipe = flatten(to_dict(load_config("cifar10", ["--train.epochs", str(preset)])), "cifar10")
        keys = [k for k in SMALL_IMAGE_KEYS if k != "model.backbone_args"  # published weights have the ImageNet stem
                or now["model.backbone"] == "resnet18" and not is_named(cfg.model.init_weights)]
        changes = {k: recipe[k] for k in keys if k not in cfg.given and recipe[k] != now[k]}
        if "model.backbone_args" in changes:  # the stem only: the width of the user's choice stays
            changes["model.backbone_args"] = {**now["model.backbone_args"], "stem": "cifar"}
    warmup, longest = changes.get("optim.warmup_epochs", now["optim.warmup_epochs"]), WARMUP_SHARE * cfg.train.epochs
    shortened = "optim.warmup_epochs" not in cfg.given and warmup > longest
    if shortened:
        changes["optim.warmup_epochs"] = round(longest, 2)
    if not changes:
        return updated(cfg, {}, long_warmup_note(cfg)) if long_warmup_note(cfg) else cfg
    reasons = [f"{cfg.data.image_size}-px images: the cifar10 recipe's settings, for {preset} of its epochs "
               f"({preset * RECIPE_STEPS_PER_EPOCH} steps; this run has about {cfg.train.epochs} x "
               f"{max(1, (images or 0) // cfg.train.batch_size)})" if small and images is not None else
               f"{cfg.data.image_size}-px images: the cifar10 recipe's settings" if small else "",
               f"warm-up at most {WARMUP_SHARE:.0%} of {cfg.train.epochs} epochs" if shortened else ""]
    notes = [f"recipe for the data and the run ({'; '.join(filter(None, reasons))}; no packaged recipe named): "
             + "; ".join(f"{k} {now[k]} -> {v}" for k, v in changes.items())
             + ". Set any of these keys, or name a --config, to choose otherwise"]
    return updated(cfg, changes, notes)


def decide_from_data(cfg: Config, listed: ImageList | None = None) -> Config:
    """The settings that follow from the data before it is decoded, in order: the image size
    (size_from_data) and the resolution schedule checked against it, then the recipe for that
    size and the run's length (recipe_for_data).
    pretrain, --print-config and preview all decide through here."""
    from byol.data.cache import cache_note

    cfg, _ = size_from_data(cfg, listed)
    check_schedule(cfg)
    if cfg.data.dataset == "folder":
        cfg = updated(cfg, {}, cache_note(cfg.data.path))
    cfg = network_channels(weights_normalization(cfg))
    return recipe_for_data(cfg, training_images(cfg, listed))


def network_channels(cfg: Config) -> Config:
    """A built-in ResNet (in_channels) or a timm model (in_chans) takes data.channels input
    channels: the argument is added to model.backbone_args where it says otherwise, with a note.
    A user's own network is probed when it is built (BYOLModule)."""
    m, channels = cfg.model, cfg.data.channels
    from byol.core.backbones import REGISTRY

    name = "in_channels" if m.backbone in REGISTRY else "in_chans" if m.backbone.startswith("timm:") else None
    if name is None or m.backbone_args.get(name, 3) == channels:
        return cfg
    note = (f"model.backbone_args {name} {m.backbone_args.get(name, 3)} -> {channels}: the network takes the data's "
            f"data.channels {channels}")
    return updated(cfg, {"model.backbone_args": {**m.backbone_args, name: channels}}, [note])


def weights_normalization(cfg: Config) -> Config:
    """With published weights named in model.init_weights (byol.pretrained), fetched or read
    from their cache: the normalisation they were trained with becomes augment.mean/std unless a
    file or the command line set them, and a byol hub export's network becomes model.backbone
    and model.backbone_args unless set; the note says which weights, from where, and whether
    their normalisation is known or ImageNet's as a default."""
    source = cfg.model.init_weights
    if not is_named(source):
        return cfg
    path = pretrained.fetch(source)
    card = pretrained.card(source, path)
    theirs = {"augment.mean": card.mean, "augment.std": card.std}
    ours = {"augment.mean": tuple(cfg.augment.mean), "augment.std": tuple(cfg.augment.std)}
    changes = {k: list(v) for k, v in theirs.items() if k not in cfg.given and tuple(v) != ours[k]}
    kept = [k for k, v in theirs.items() if k in cfg.given and tuple(v) != ours[k]]
    trained = (f"trained with mean {list(card.mean)}, std {list(card.std)} ({card.said})" if card.known else
               f"normalisation {card.said}: mean {list(card.mean)}, std {list(card.std)}")
    note = f"model.init_weights {source}: read from {path}; {trained}"
    if kept:
        note += (f"; this run keeps {', '.join(kept)} from {cfg.given[kept[0]]}, which differ: set --augment.mean "
                 f"and --augment.std to the weights' values to use them")
    else:
        note += ", which this run's augment.mean/std use"
    if card.backbone is not None:  # a byol hub export: the network it holds, unless the run names one
        network = {"model.backbone": card.backbone, "model.backbone_args": card.backbone_args}
        network = {k: v for k, v in network.items() if k not in cfg.given}
        if network:
            changes.update(network)
            note += "; " + ", ".join(f"{k} {v}" for k, v in network.items()) + " from its config.json"
    return updated(cfg, changes, [note])


def check_schedule(cfg: Config) -> None:
    """Every side of train.resolution_schedule at most data.image_size, the side the network is
    evaluated and exported at (known once the data decided it)."""
    schedule, full = cfg.train.resolution_schedule, cfg.data.image_size
    too_big = {start: side for start, side in schedule.items() if side > full}
    if too_big:
        raise ConfigError(f"train.resolution_schedule {schedule}: the side {max(too_big.values())} px is above "
                          f"data.image_size {full} px, the side the network is evaluated at; a schedule shrinks "
                          "the views, so give sides up to that")


def build_data(cfg: Config, listed: ImageList | None = None) -> tuple[Config, TrainingData]:
    """The TrainingData of cfg.data (source, subset, memory or stream) and cfg.train (batch,
    seed), and the Config it was built with: the data-aware augmentation defaults
    (adapt_to_data) are decided as soon as it is known whether the images are grayscale, before
    any augmentation is built: from the pixels of images in memory, from data.channels for
    streamed ones. `listed`: a folder's images, if listing() has them already."""
    if not cfg.data.path:
        raise ConfigError("data.path is not set: give the folder or .tar of training images")
    if cfg.data.dataset == "folder":
        cfg, grayscale, *parts = folder_source(cfg, listed if listed is not None else listing(cfg))
    else:
        source = {"video": video_source, "shards": shard_source}.get(cfg.data.dataset, named_source)
        cfg, grayscale, *parts = source(cfg)
    return cfg, replace(make_loader(cfg, *parts), grayscale=grayscale)


def plan_data(cfg: Config) -> tuple[Config, int, bool]:
    """What build_data would decide (the final Config), the number of training images and
    whether they are grayscale, with less work: a folder's images in memory are not decoded,
    only the first GRAYSCALE_SAMPLE (the pixels that decide grayscale, as in build_data). For
    `byol pretrain --print-config`."""
    listed = listing(cfg)
    cfg = decide_from_data(cfg, listed)
    if listed is None:
        cfg, data = build_data(cfg)
        return cfg, data.images, data.grayscale
    images, _, in_memory, _ = folder_split(cfg, listed)
    if in_memory:
        sample = decode_to_memory(images, train_size(cfg), cfg.data.channels, limit=GRAYSCALE_SAMPLE)
        grayscale = looks_grayscale(sample, cfg.data.channels)
    else:
        grayscale = cfg.data.channels == 1
    enough_images(cfg, len(images))
    return decided(cfg, grayscale), len(images), grayscale


def decided(cfg: Config, grayscale: bool) -> Config:
    """cfg with the data-aware augmentation defaults for these images (adapt_to_data)."""
    return adapt_to_data(cfg, grayscale)[0]


# Each source returns (the Config, decided; whether the images are grayscale; the training
# images; the kNN monitor's labeled bank or None; its held-out images or None; the data's
# identity); make_loader adds what is common.


def folder_split(cfg: Config, listed: ImageList) -> tuple[ImageList, ImageList | None, bool, bool]:
    """A folder's training images (data.limit_per_class, data.limit, less those held out), the
    held-out ones (data.val_fraction of each class, when the kNN monitor runs without
    data.val_path) or None, whether they are kept in memory (below MEMORY_LIMIT_IMAGES), and
    whether the kNN monitor runs (labeled images and train.knn_every > 0)."""
    d, t = cfg.data, cfg.train
    images, held = listed, None
    if d.limit_per_class:
        images = first_per_class(images, d.limit_per_class)
    if d.limit:
        images = random_subset(images, d.limit, t.seed)
    in_memory = d.in_memory if d.in_memory is not None else (len(images) <= MEMORY_LIMIT_IMAGES
                                                             and d.large_images != "full")
    monitor = t.knn_every > 0 and images.labeled
    if monitor and not d.val_path and d.val_fraction > 0:
        # held out of training too; copies looked for where the images are read whole anyway
        images, held = split_held_out(images, d.val_fraction, t.seed, find_copies=in_memory)
    return images, held, in_memory, monitor


def folder_source(cfg: Config, listed: ImageList):
    """A folder or .tar of images (class sub-folders: labels): in memory below
    MEMORY_LIMIT_IMAGES, else streamed; held out for the kNN monitor: data.val_path, or
    data.val_fraction of each class (then never trained on)."""
    d, t = cfg.data, cfg.train
    images, held, in_memory, monitor = folder_split(cfg, listed)
    bank = test = None
    if monitor and d.val_path:
        test = val_images(cfg)
    elif held is not None:
        test = decode_to_memory(held, eval_size(cfg), d.channels, decoder=d.jpeg_decoder)
    if in_memory:
        train = decode_to_memory(images, train_size(cfg), d.channels, decoder=d.jpeg_decoder)
        grayscale = looks_grayscale(train, d.channels)
        cfg = decided(cfg, grayscale)
        bank = train if monitor else None
    else:
        grayscale = d.channels == 1
        cfg = decided(cfg, grayscale)
        train = StreamImages(images, train_size(cfg), d.channels, d.large_images, worker_transform(cfg),
                             full_crops(cfg), d.jpeg_decoder)
        if monitor:
            bank = decode_to_memory(random_subset(images, 10_000, t.seed), eval_size(cfg), d.channels,
                                    decoder=d.jpeg_decoder)
    if bank is not None and test is not None and d.val_path:
        test = match_classes(test, bank.classes, d.val_path)
    return cfg, grayscale, train, bank, test, data_identity(images.items)


def video_source(cfg: Config):
    """Pairs of nearby frames of the videos in data.path (no kNN monitor)."""
    d = cfg.data
    grayscale = d.channels == 1
    cfg = decided(cfg, grayscale)
    frames = VideoFramePairs(d.path, d.load_size or d.image_size, d.max_frame_gap, d.channels,
                             d.large_images, worker_transform(cfg), cfg.train.seed)
    return cfg, grayscale, frames, None, None, data_identity([os.path.relpath(f, d.path) for f in frames.frames])


def shard_source(cfg: Config):
    """WebDataset-style tar shards, streamed; the kNN bank is the first 10,000 images of the stream."""
    from byol.data.shards import ShardStream

    d, t = cfg.data, cfg.train
    grayscale = d.channels == 1
    cfg = decided(cfg, grayscale)
    train = ShardStream(d.path, train_size(cfg), d.channels, d.large_images, worker_transform(cfg), t.seed,
                        t.batch_size, crops=full_crops(cfg), eval_size=eval_size(cfg), decoder=d.jpeg_decoder)
    bank = test = None
    if t.knn_every > 0 and d.val_path:
        bank = train.head(10_000)
        test = val_images(cfg)
        test = match_classes(test, bank.classes, d.val_path) if bank.classes else test
    return cfg, grayscale, train, bank, test, data_identity(train.shards, count=train.total)


def named_source(cfg: Config):
    """A standard data set (byol.data.datasets), in memory; its test split is the held-out set."""
    from byol.data.datasets import load_dataset, match_channels

    d, t = cfg.data, cfg.train
    split = d.split or ("train+unlabeled" if d.dataset == "stl10" else "train")
    train = match_channels(load_dataset(d.dataset, d.path, split), d.channels)
    if d.limit and d.limit < len(train):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(t.seed))
        train = train.subset(order[:d.limit].sort().values)
    grayscale = looks_grayscale(train, d.channels)
    cfg = decided(cfg, grayscale)
    bank = test = None
    if t.knn_every > 0:
        test = match_channels(load_dataset(d.dataset, d.val_path or d.path, "test"), d.channels)
        labeled = train.labels >= 0
        bank = train if labeled.all() else train.subset(labeled)
    return cfg, grayscale, train, bank, test, data_identity(images=train.images, labels=train.labels)


def val_images(cfg: Config) -> MemoryImages:
    """The labeled images of data.val_path, decoded at the evaluation size, for the kNN monitor."""
    d = cfg.data
    test = decode_to_memory(list_images(d.val_path), eval_size(cfg), d.channels)
    if not test.classes:
        raise DataError(f"data.val_path {d.val_path!r} has no class sub-folders; the kNN monitor needs labels")
    return test


def train_size(cfg: Config) -> int | None:
    """The side training images are decoded to; with large_images 'full', the bound on the
    shorter side of the whole image the crops are drawn from (None: none)."""
    d = cfg.data
    return d.load_size if d.large_images == "full" else d.load_size or d.image_size


def eval_size(cfg: Config) -> int:
    """The side evaluation images are decoded to (shorter side, then the centre square, of which
    the kNN monitor takes the centre data.eval_crop): data.load_size, or with large_images
    'full' image_size / eval_crop (ImageNet: 224 / 0.875 = 256, DeepMind's _decode_and_center_crop)."""
    d = cfg.data
    if d.large_images == "full":
        return round(d.image_size / d.eval_crop)
    return d.load_size or d.image_size


def full_crops(cfg: Config):
    """The augmentation settings whose crops the data workers take from whole images (large_images
    'full'), else None."""
    return cfg.augment if cfg.data.large_images == "full" else None


def worker_transform(cfg: Config) -> TwoViewTransform | None:
    """The per-image augmentation when data.augment_on is 'workers', else None (the device augments)."""
    if cfg.data.augment_on != "workers":
        return None
    return TwoViewTransform(cfg.augment, cropped=cfg.data.large_images == "full")


def make_loader(cfg: Config, train, bank, test, identity: dict | None = None) -> TrainingData:
    """The loader of `train`: in-memory images in whole-batch slices (on the training device when
    it is a GPU), everything else per item in DataLoader workers, collated into one Batch."""
    t = cfg.train
    enough_images(cfg, len(train))
    memory = isinstance(train, MemoryImages)
    resident = None
    if memory and cfg.data.augment_on == "workers":  # per image in the workers, as the setting says
        train, memory = AugmentedImages(train, worker_transform(cfg)), False
    if memory and on_device(cfg):
        resident, train = train.images, BatchIndices(train)
    workers = 0 if memory else loader_workers(cfg)
    if isinstance(train, torch.utils.data.IterableDataset):  # shards: the stream splits itself
        loader = torch.utils.data.DataLoader(
            train, batch_size=t.batch_size, drop_last=True, collate_fn=collate, num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(), timeout=WORKER_TIMEOUT_S if workers > 0 else 0)
        return TrainingData(loader, bank, test, train.total, resident, identity)
    loader = ResumableLoader(
        train, batch_size=t.batch_size, sampler=ShardedSampler(len(train), seed=t.seed),
        collate_fn=already_batched if memory else collate, num_workers=workers,
        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available() and not memory,
        timeout=WORKER_TIMEOUT_S if workers > 0 else 0,
    )
    if bank is None or test is None:
        bank = test = None
    return TrainingData(loader, bank, test, len(train), resident, identity)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, as a cluster's scheduler sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def loader_workers(cfg: Config) -> int:
    """data.num_workers, or where unset: this process's share of the cores (usable_cores over the
    training processes of this machine: LOCAL_WORLD_SIZE, else train.devices), less one for the
    training loop itself; at least 1."""
    if cfg.data.num_workers is not None:
        return cfg.data.num_workers
    local = int(os.environ.get("LOCAL_WORLD_SIZE", cfg.train.devices))
    return max(1, usable_cores() // max(1, local) - 1)


def enough_images(cfg: Config, n: int) -> None:
    """A DataError unless the n training images fill at least one batch."""
    if n < cfg.train.batch_size:
        raise DataError(f"{cfg.data.path!r} has {n} usable images, fewer than one batch "
                        f"(train.batch_size = {cfg.train.batch_size})")


def on_device(cfg: Config) -> bool:
    """Keep in-memory images on the training device: yes on a GPU unless the config says no."""
    if cfg.train.data_on_device is not None:
        return cfg.train.data_on_device
    return cfg.train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
