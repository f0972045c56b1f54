"""The run plan: every decision a run makes for the user, made once, by one pure function.

    facts = read_facts(cfg, read_launch())     # byol.training.facts: the world, read once
    plan = decide(cfg, facts)                  # no I/O: the final Config, each decision and its reason
    print("\\n".join(plan.lines()))            # what pretrain, --print-config and preview say

The decisions, in order, each a note in the Config (cfg.notes) and an entry in plan.json:
1. data.image_size from the images' typical shorter side, unless set (decide_image_size);
2. how the files' values are read: 8-bit pictures, or full precision with the data's band
   count and per-band standardisation (decide_pixels);
3. the named weights' normalisation, and a byol hub export's network (decide_weights);
4. the built-in network's input channels from data.channels (decide_channels);
5. the launch: world size, this process's rank, precision, data workers, images on the device
   (decide_launch), where photos' crops are cut (decide_crops), and the batch where none was
   set and the images are few (decide_batch);
   then steps per epoch, the global batch and the scaled learning rate;
6. with no packaged recipe named, the recipe for the data and the run's length
   (decide_recipe: small images get the cifar10 recipe, warm-up at most a tenth of the run);
7. the augmentation's data-aware defaults: no blur on small images, no colour on grey ones, the
   band-safe set for full-precision data (decide_augmentation);
8. the budget line, from measured curves of similar data (byol.training.budget).
Keys a file, the command line or a Python dict set are never changed, except where the data
forces it (a network's input channels), which its note says.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from byol.config import (
    RECIPES_DIR,
    Config,
    ConfigError,
    flatten,
    load_config,
    to_dict,
    updated,
)
from byol.core.optim import scaled_lr
from byol.data.listing import DataError
from byol.training.budget import SMALL_IMAGES
from byol.training.facts import Facts, Hardware, Launch

IMAGE_SIZE_RANGE = (16, 224)  # a size taken from the data is kept within these (224: the paper's)
WARMUP_SHARE = 0.1  # with no recipe named, warm-up is at most this share of the run
SMALL_IMAGE_KEYS = ("model.backbone_args", "model.projection_hidden_dim", "model.prediction_hidden_dim",
                    "model.projection_dim", "model.tau_base", "model.tau_final", "optim.name", "optim.base_lr",
                    "optim.weight_decay", "optim.momentum", "optim.warmup_epochs")
# The cifar10 recipe's epoch presets were chosen on 10,000 CIFAR-10 images at batch 256: 39
# steps an epoch. A run on other data takes the preset of as many steps, not of as many epochs:
# the target's EMA and the heads' width depend on the number of updates.
RECIPE_STEPS_PER_EPOCH = 10_000 // 256
BLUR_BELOW = 40  # px: below it, no Gaussian blur (its 3x3 kernel is a near-box filter, see decide_augmentation)
MULTISPECTRAL = 4  # full-precision data of at least this many bands takes rotations and band dropout by default
ROT90_ANY = 0.75  # rot90_p that makes each of the four orientations equally likely
BAND_DROP = 0.1  # band_drop_p by default for multi-band data: a choice, not a measured optimum
# Full-precision brightness and contrast, in standard deviations of each band: the paper's 0.4 of
# the pixel range is about 1.6 standard deviations of photos' pixels, and at 0.4 standard
# deviations BYOL did not beat the untrained network on the demo's textures saved as 16-bit
# bands. 1.2 and 0.8 were chosen over (0.4, 0.4), (1.2, 0.4), (1.77, 0.4) and (1.77, 0.8) on
# a validation copy of the demo data (generated with another seed, 10 epochs), by their mean over
# training seeds 0, 1 and 2: docs/beyond-rgb.md, "How the band defaults were chosen".
BAND_BRIGHTNESS, BAND_CONTRAST = 1.2, 0.8
PRECISION_NAMES = {"32-true": "fp32", "bf16-mixed": "bf16 autocast (mixed)", "16-mixed": "fp16 autocast (mixed)"}


@dataclass(frozen=True)
class Decision:
    """One decision: what it is, the keys it changed (dotted key -> new value) and its note."""
    name: str
    changes: dict
    note: str


@dataclass(frozen=True)
class Plan:
    """A run, decided: the final Config (built once, every decision in it and in its notes),
    each decision, and the numbers the run's lines say."""
    cfg: Config
    decisions: tuple[Decision, ...]
    world_size: int  # training processes, all nodes
    rank: int  # this process's global rank (rank 0 alone writes the run folder)
    local_world_size: int  # training processes on this machine
    train_images: int | None
    grayscale: bool
    steps_per_epoch: int
    global_batch: int
    lr: float
    precision: str  # Lightning's: 32-true, bf16-mixed, 16-mixed
    precision_reason: str
    workers: int  # DataLoader worker processes for streamed data
    workers_reason: str
    data_on_device: bool  # in-memory images kept on the training device
    sync_batchnorm: bool
    crop_on: str | None  # large_images full: "device" or "workers" cut each view's crop (decide_crops); else None
    crop_reason: str
    facts: Facts = field(repr=False, compare=False)

    def lines(self) -> list[str]:
        """What a run says before it starts: every note, then the plan line."""
        return [*self.cfg.notes, plan_line(self)]

    def as_dict(self) -> dict:
        """plan.json: the facts, each decision with its reason, and the numbers."""
        numbers = {k: v for k, v in asdict(self).items() if k not in ("cfg", "decisions", "facts")}
        return {"facts": self.facts.as_dict(), "decisions": [asdict(d) for d in self.decisions],
                "notes": list(self.cfg.notes), "numbers": numbers}


class Draft:
    """The settings while decisions are made: the Config's values (flat, dotted keys), what a
    source set (given), and the decisions so far; built into a Config once, at the end."""

    def __init__(self, cfg: Config):
        self.base, self.given = cfg, cfg.given
        self.values = flatten(to_dict(cfg), "config")
        self.decisions: list[Decision] = []

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def decide(self, name: str, changes: dict, note: str) -> None:
        self.values.update(changes)
        self.decisions.append(Decision(name, dict(changes), note))

    def build(self) -> Config:
        changes = {k: v for d in self.decisions for k, v in d.changes.items()}
        return updated(self.base, changes, [d.note for d in self.decisions if d.note])


def decide(cfg: Config, facts: Facts) -> Plan:
    """The plan of the run `cfg` asks for, on `facts` (see the module docstring). Pure: reads
    nothing but its arguments, writes nothing; a setting that cannot work is one ConfigError."""
    draft = Draft(cfg)
    data = facts.data
    decide_image_size(draft, data.typical_side)
    check_schedule(draft)
    if data.cache:
        draft.decide("cache", {}, cache_note(draft["data.path"], data.cache))
    decide_pixels(draft, data)
    decide_weights(draft, facts.weights)
    decide_channels(draft)
    launch = decide_launch(draft, facts)
    launch.update(decide_crops(draft, facts))
    decide_batch(draft, data.train_images, launch["world_size"])
    decide_recipe(draft, data.train_images, facts.launch)
    decide_augmentation(draft, data.grayscale)
    per_epoch = steps_per_epoch(draft["train.batch_size"], draft["train.accumulate"], launch["world_size"],
                                data.train_images or 0)
    budget(draft, data.train_images, per_epoch, data.grayscale, list(facts.measurements))
    final = draft.build()
    global_batch = final.train.batch_size * launch["world_size"] * final.train.accumulate
    return Plan(final, tuple(draft.decisions), train_images=data.train_images, grayscale=data.grayscale,
                steps_per_epoch=per_epoch, global_batch=global_batch, lr=scaled_lr(final.optim.base_lr, global_batch),
                facts=facts, **launch)


# -- the decisions, each on the draft ----------------------------------------------------------


def decide_image_size(draft: Draft, typical: int | None) -> None:
    """data.image_size from the images when no file or command line set it: their typical
    shorter side, kept within IMAGE_SIZE_RANGE; a line when a size that was set is far below the
    images' own (they are shrunk before cropping)."""
    if typical is None:
        return
    if "data.image_size" not in draft.given:
        size = min(max(typical, IMAGE_SIZE_RANGE[0]), IMAGE_SIZE_RANGE[1])
        capped = f", kept within {IMAGE_SIZE_RANGE[0]}-{IMAGE_SIZE_RANGE[1]}" if size != typical else ""
        draft.decide("image size", {"data.image_size": size},
                     f"data.image_size {size}: the images' typical shorter side is {typical} px{capped} (set "
                     "data.image_size to choose another)")
    elif typical >= 4 * draft["data.image_size"]:
        size = draft["data.image_size"]
        draft.decide("image size", {}, f"the images' typical shorter side is {typical} px, {typical / size:.0f}x "
                                       f"data.image_size {size}: each is shrunk to {size} px before it is cropped "
                                       "(a larger data.image_size keeps more detail)")


def check_schedule(draft: Draft) -> None:
    """Every side of train.resolution_schedule at most data.image_size, the side the network is
    evaluated and exported at (known once the data decided it)."""
    schedule, full = draft["train.resolution_schedule"], draft["data.image_size"]
    too_big = {start: side for start, side in schedule.items() if side > full}
    if too_big:
        raise ConfigError(f"train.resolution_schedule {schedule}: the side {max(too_big.values())} px is above "
                          f"data.image_size {full} px, the side the network is evaluated at; a schedule shrinks "
                          "the views, so give sides up to that")


def cache_note(path: str, marker: dict) -> str:
    """The note of a run on a cache folder: what it is a copy of, at which bound."""
    done = "" if marker.get("complete") else " (unfinished: run the byol cache command again to complete it)"
    return (f"data.path {path!r} is a resized copy of {marker.get('source')!r}: longer side at most "
            f"{marker.get('max_side')} px (byol cache){done}")


def decide_pixels(draft: Draft, data) -> None:
    """How each file's values are read (data.pixels, decided from the files where auto) and the
    network's input channels (data.channels: for auto, 3 for 8-bit pictures, the files' band
    count for full-precision data). For full precision: a data.channels that was set must be
    the files' band count; augment.mean/std become the data's per-band statistics unless set (a
    set one has one value per band); data.clip becomes data.clip_percentiles' values. The note
    says what was read and the statistics."""
    pixels, channels = data.pixels, draft["data.channels"]
    changes = {"data.pixels": pixels} if draft["data.pixels"] != pixels else {}
    if pixels == "8-bit":
        if channels == "auto":
            changes["data.channels"] = 3
        if changes:
            draft.decide("pixels", changes, "")  # the 8-bit pictures every run read before data.pixels existed
        return
    bands = data.channels
    if channels != "auto" and channels != bands:
        raise ConfigError(f"data.channels {channels} (from {draft.given.get('data.channels', 'the defaults')}): the "
                          f"images of {draft['data.path']!r} have {bands} bands as read; set data.channels {bands} or "
                          "auto, or pick bands with data.bands")
    changes["data.channels"] = bands
    stats = data.band_stats
    said = []
    for k, theirs in (("augment.mean", stats.mean), ("augment.std", stats.std)):
        if k in draft.given:
            if len(draft[k]) != bands:
                raise ConfigError(f"{k} {list(draft[k])} (from {draft.given[k]}): full-precision data needs one value "
                                  f"per band, {bands} here; leave it unset to use the data's own")
            said.append(f"{k} as set")
        else:
            changes[k] = [float(f"{v:.6g}") for v in theirs]
    if draft["data.clip_percentiles"] is not None and "data.clip" not in draft.given:
        changes["data.clip"] = [[float(f"{v:.6g}") for v in stats.low], [float(f"{v:.6g}") for v in stats.high]]
    clip = changes.get("data.clip", draft["data.clip"])
    numbers = "; ".join(f"band {i}: {m:.4g} +- {sd:.4g}" for i, (m, sd) in enumerate(zip(stats.mean, stats.std)))
    draft.decide("pixels", changes,
                 f"data.pixels full ({data.pixels_from}): {bands} band{'s' * (bands > 1)} read as stored"
                 + (f" (data.bands {list(draft['data.bands'])})" if draft["data.bands"] is not None else "")
                 + (f", clipped per band to data.clip {clip}" if clip is not None else "")
                 + f", each standardised by its mean and standard deviation over {stats.images} training images ("
                 + (", ".join(said) + "; the data's: " if said else "")
                 + f"{numbers})")


def decide_weights(draft: Draft, weights) -> None:
    """With published weights named in model.init_weights: the normalisation they were trained
    with becomes augment.mean/std unless a file or the command line set them, and a byol hub
    export's network becomes model.backbone and model.backbone_args unless set; the note says
    which weights, from where, and whether their normalisation is known or ImageNet's as a
    default."""
    if weights is not None and draft["data.channels"] != 3:
        bands = draft["data.channels"]
        draft.decide("first convolution", {},
                     f"model.init_weights {weights.source}: where its first convolution takes 3 bands (RGB) and the "
                     f"network {bands}, its filters are "
                     + ("summed into one" if bands == 1 else f"repeated over the {bands} bands and scaled by 3/{bands}")
                     + " (timm's adapt_input_conv)")
    if weights is None or not weights.named:
        return
    if draft["data.pixels"] == "full":  # the weights' RGB normalisation does not describe the data's units
        theirs = {}
    else:
        theirs = {"augment.mean": tuple(weights.mean), "augment.std": tuple(weights.std)}
    changes = {k: list(v) for k, v in theirs.items() if k not in draft.given and v != tuple(draft[k])}
    kept = [k for k, v in theirs.items() if k in draft.given and v != tuple(draft[k])]
    trained = (f"trained with mean {list(weights.mean)}, std {list(weights.std)} ({weights.normalization_said})"
               if weights.normalization_known else
               f"normalisation {weights.normalization_said}: mean {list(weights.mean)}, std {list(weights.std)}")
    note = f"model.init_weights {weights.source}: read from {weights.path}; {trained}"
    if not theirs:
        note += "; this run standardises its full-precision bands with the data's own statistics instead"
    elif kept:
        note += (f"; this run keeps {', '.join(kept)} from {draft.given[kept[0]]}, which differ: set --augment.mean "
                 f"and --augment.std to the weights' values to use them")
    else:
        note += ", which this run's augment.mean/std use"
    if weights.backbone is not None:  # a byol hub export: the network it holds, unless the run names one
        network = {"model.backbone": weights.backbone, "model.backbone_args": weights.backbone_args}
        network = {k: v for k, v in network.items() if k not in draft.given}
        if network:
            changes.update(network)
            note += "; " + ", ".join(f"{k} {v}" for k, v in network.items()) + " from its config.json"
    draft.decide("weights", changes, note)


def decide_channels(draft: Draft) -> None:
    """A built-in ResNet (in_channels) or a timm model (in_chans) takes data.channels input
    channels: the argument is added to model.backbone_args where it says otherwise. A user's
    own network is probed when it is built (BYOLModule)."""
    from byol.core.backbones import REGISTRY

    backbone, args, channels = draft["model.backbone"], draft["model.backbone_args"], draft["data.channels"]
    name = "in_channels" if backbone in REGISTRY else "in_chans" if backbone.startswith("timm:") else None
    if name is None or args.get(name, 3) == channels:
        return
    draft.decide("network channels", {"model.backbone_args": {**args, name: channels}},
                 f"model.backbone_args {name} {args.get(name, 3)} -> {channels}: the network takes the data's "
                 f"data.channels {channels}")


def from_recipe(source: str) -> bool:
    """Whether a key's source (cfg.given's value) is a packaged recipe (configs/*.yaml)."""
    return Path(source.split(": epoch_presets")[0]).parent == RECIPES_DIR


def named_a_recipe(given: dict) -> bool:
    """Whether a packaged recipe (configs/*.yaml, `--config cifar10`) set any key: a recipe is a
    whole set of choices measured together, and the recipe for the data leaves it as it is. A
    config file of the user's own is read as the command line and a Python caller's dict are:
    the keys it sets are kept, the rest follow the data."""
    return any(from_recipe(source) for source in given.values())


def preset_epochs(epochs: int, per_epoch: int | None) -> int:
    """The epoch count whose cifar10 preset fits this run: its steps in the recipe's epochs
    (RECIPE_STEPS_PER_EPOCH); the run's own epochs where the image count is not known."""
    if per_epoch is None:
        return epochs
    return max(1, round(epochs * max(1, per_epoch) / RECIPE_STEPS_PER_EPOCH))


def decide_recipe(draft: Draft, images: int | None, launch: Launch) -> None:
    """With no packaged recipe named, the recipe follows the data and the run's length; a key a
    source set is never changed.

    - Images of at most SMALL_IMAGES px: the cifar10 recipe's optimiser, heads and target (its
      epoch preset for this run's number of steps, preset_epochs), and for the built-in ResNet
      its CIFAR stem (a 3x3 stride-1 first convolution, no max-pool: the ImageNet stem leaves a
      32-px image 8 px wide after its first block), unless model.init_weights names published
      weights (made with the ImageNet stem; weights this library pretrained on small images have
      the CIFAR stem). BENCHMARKS.md, "How the recommended recipe was chosen". The
      normalisation stays ImageNet's: the CIFAR statistics describe CIFAR only.
    - Any size: warm-up at most WARMUP_SHARE of the run, so that a short run is never all
      warm-up with a learning rate that never decays.
    A packaged recipe is kept as it is, with a line where its warm-up outlasts the run."""
    from byol.pretrained import is_named

    epochs = draft["train.epochs"]
    if epochs == 0:
        return
    if named_a_recipe(draft.given):
        long_warmup(draft)
        return
    changes: dict = {}
    size = draft["data.image_size"]
    small = size <= SMALL_IMAGES
    per_epoch = None if images is None else steps_per_epoch(draft["train.batch_size"], draft["train.accumulate"],
                                                            world_size(draft, launch), images)
    if small:
        preset = preset_epochs(epochs, per_epoch)
        recipe = flatten(to_dict(load_config("cifar10", ["--train.epochs", str(preset)])), "cifar10")
        keys = [k for k in SMALL_IMAGE_KEYS if k != "model.backbone_args"  # published weights have the ImageNet stem
                or draft["model.backbone"] == "resnet18" and not is_named(draft["model.init_weights"])]
        changes = {k: recipe[k] for k in keys if k not in draft.given and recipe[k] != draft[k]}
        if "model.backbone_args" in changes:  # the stem only: the width of the user's choice stays
            changes["model.backbone_args"] = {**draft["model.backbone_args"], "stem": "cifar"}
    warmup, longest = changes.get("optim.warmup_epochs", draft["optim.warmup_epochs"]), WARMUP_SHARE * epochs
    shortened = "optim.warmup_epochs" not in draft.given and warmup > longest
    if shortened:
        changes["optim.warmup_epochs"] = round(longest, 2)
    if not changes:
        long_warmup(draft)
        return
    stem = ("; the CIFAR stem keeps the full side in the first block, so a {0}-px image costs about what a "
            "{1}-px one costs with the ImageNet stem".format(size, 4 * size)
            if changes.get("model.backbone_args", {}).get("stem") == "cifar" else "")
    recipe = ((f"the cifar10 recipe's settings for {size}-px images, its preset for {preset} of its epochs "
               f"({preset * RECIPE_STEPS_PER_EPOCH} steps; this run has about {epochs} x {max(1, per_epoch)})"
               if per_epoch is not None else f"the cifar10 recipe's settings for {size}-px images") + stem
              if small else f"the defaults (the paper's ImageNet recipe: {draft['optim.name']}, base lr "
                            f"{draft['optim.base_lr']:g}) for {size}-px images")
    warmup = f", warm-up at most {WARMUP_SHARE:.0%} of the {epochs}-epoch run" if shortened else ""
    draft.decide("recipe", changes,
                 f"recipe: {recipe}{warmup} (no packaged recipe named): "
                 + "; ".join(f"{k} {draft[k]} -> {v}" for k, v in changes.items())
                 + ". Set any of these keys, or name a packaged recipe (--config cifar10, imagenet, ...), to choose "
                   "otherwise")


def long_warmup(draft: Draft) -> None:
    """A line when optim.warmup_epochs is at least the run's length: the learning rate is still
    rising when the run ends, and never decays."""
    warmup, epochs = draft["optim.warmup_epochs"], draft["train.epochs"]
    if epochs and warmup >= epochs:
        draft.decide("warm-up", {}, f"optim.warmup_epochs {warmup:g} (from {draft.given.get('optim.warmup_epochs', 'the defaults')}) is "
                                    f"not shorter than the run's {epochs} epoch{'s' * (epochs > 1)}: the learning rate "
                                    "is still rising when the run ends and never decays; set optim.warmup_epochs to a "
                                    "tenth of train.epochs or so")


def decide_augmentation(draft: Draft, grayscale: bool) -> None:
    """Data-aware defaults: the augmentation keys that no file, preset or command line set,
    changed where the data makes the paper's ImageNet default a poor fit.

    - Images below BLUR_BELOW px: no Gaussian blur. The blur kernel is about 10 % of the side
      (paper, Appendix B), 3x3 at these sizes, so with sigma up to 2 it is a near-box filter on
      every view-1 image; lightly's CIFAR-10 benchmark and solo-learn's CIFAR recipe switch it
      off too. Measured at 32 px: BENCHMARKS.md, "How the recommended recipe was chosen".
    - Grayscale images: saturation, hue and colour dropping do nothing to a grey image; they
      are set to 0 so that config.yaml records what really happens.
    - Full-precision data (data.pixels full): hue, saturation, colour dropping and solarization
      assume RGB pixels in [0, 1] and are off, also where a packaged recipe set them (a file of
      the user's own or the command line that turns one on is refused); brightness and contrast
      are BAND_BRIGHTNESS and BAND_CONTRAST standard deviations; with MULTISPECTRAL bands or
      more, rotations by 90 degrees (every orientation equally likely: overhead imagery has no
      up) and band dropout (BAND_DROP) are on."""
    small = draft["data.image_size"] < BLUR_BELOW
    views = ("view1", "view2", "small") if draft["augment.small_crops"] else ("view1", "view2")
    names = [f"augment.{view}.blur_p" for view in views] if small else []
    full = draft["data.pixels"] == "full"
    if grayscale or full:
        names += [f"augment.{view}.{k}" for view in views for k in ("saturation", "hue", "grayscale_p")]
    if full:
        colour = [f"augment.{view}.{k}" for view in views for k in ("saturation", "hue", "grayscale_p", "solarize_p")]
        set_on = [k for k in colour if k in draft.given and draft[k] != 0.0 and not from_recipe(draft.given[k])]
        if set_on:
            raise ConfigError(f"{set_on[0]} {draft[set_on[0]]} (from {draft.given[set_on[0]]}): hue, saturation, colour "
                              "dropping and solarization need 8-bit RGB pixels in [0, 1]; full-precision data takes "
                              "brightness, contrast, blur, flips, rotations and band dropout: set it to 0")
        names += [k for k in colour if k.endswith("solarize_p")]
    changes = {k: 0.0 for k in names if (k not in draft.given or full and from_recipe(draft.given[k]))
               and draft[k] != 0.0}
    if full:  # in standard deviations of each band (BAND_BRIGHTNESS)
        for view in views:
            for k, v in ((f"augment.{view}.brightness", BAND_BRIGHTNESS), (f"augment.{view}.contrast", BAND_CONTRAST)):
                if (k not in draft.given or from_recipe(draft.given[k])) and draft[k] != v:
                    changes[k] = v
    bands = draft["data.channels"]
    if full and bands >= MULTISPECTRAL:  # overhead multi-band imagery: no up, and bands that can stand in for each other
        for view in views:
            for k, v in ((f"augment.{view}.rot90_p", ROT90_ANY), (f"augment.{view}.band_drop_p", BAND_DROP)):
                if k not in draft.given and draft[k] != v:
                    changes[k] = v
    if changes:
        why = ([f"{draft['data.image_size']}-px images"] if small else []) + (["grayscale images"] if grayscale else []) \
            + ([f"full-precision data of {bands} band{'s' * (bands > 1)} (brightness and contrast on standardised "
                "values, never clipped; no colour operation)"] if full else [])
        draft.decide("augmentation", changes, f"data-aware defaults for {' and '.join(why)}: "
                                              + "; ".join(f"{k}: {draft[k]} -> {v}" for k, v in changes.items()))


def world_size(draft: Draft, launch: Launch) -> int:
    """Training processes: the launcher's WORLD_SIZE, else train.devices x train.num_nodes."""
    return launch.world_size or draft["train.devices"] * draft["train.num_nodes"]


def decide_launch(draft: Draft, facts: Facts) -> dict:
    """The launch's numbers: world size, this process's rank and the processes on its machine,
    precision and why, data workers and why, in-memory images on the device, SyncBatchNorm. A
    GPU asked for where there is none, and a launcher's world that differs from train.devices x
    train.num_nodes, are one ConfigError each."""
    launch, hw = facts.launch, facts.hardware
    devices, nodes, accelerator = draft["train.devices"], draft["train.num_nodes"], draft["train.accelerator"]
    if accelerator in ("gpu", "cuda"):
        if not hw.cuda:
            import torch

            raise ConfigError(f"train.accelerator {accelerator}: this machine has no CUDA GPU that torch "
                              f"can use (torch {torch.__version__}); use train.accelerator auto or cpu")
        if devices > hw.cuda_devices:
            raise ConfigError(f"train.devices {devices}: this machine has {hw.cuda_devices} CUDA GPU(s); ask for at "
                              "most that many")
    if launch.world_size is not None and launch.world_size != devices * nodes:
        raise ConfigError(f"the launcher started {launch.world_size} training processes (WORLD_SIZE), but "
                          f"train.devices {devices} x train.num_nodes {nodes} = {devices * nodes}; set train.devices "
                          "to the processes on each node and train.num_nodes to the nodes")
    world = world_size(draft, launch)
    on_gpu = trains_on_gpu(draft, hw)
    precision, reason = choose_precision(draft["train.precision"], on_gpu, hw)
    local = launch.local_world_size or devices
    workers, why = loader_workers(draft["data.num_workers"], hw.cores, local)
    on_device = draft["train.data_on_device"] if draft["train.data_on_device"] is not None else on_gpu
    return {"world_size": world, "rank": launch_rank(launch, devices), "local_world_size": local,
            "precision": precision, "precision_reason": reason, "workers": workers, "workers_reason": why,
            "data_on_device": on_device, "sync_batchnorm": draft["train.sync_batchnorm"] and world > 1 and on_gpu}


def trains_on_gpu(draft: Draft, hw: Hardware) -> bool:
    """Whether the run trains on a CUDA GPU: train.accelerator allows it and there is one."""
    return draft["train.accelerator"] in ("auto", "gpu", "cuda") and hw.cuda


def decide_crops(draft: Draft, facts: Facts) -> dict:
    """With data.large_images full, where each view's crop of a whole photo is cut and resized:
    'device' (the workers decode each photo at the scale its crops need and pass it with the two
    boxes; the training device cuts and resizes the whole batch, core.augment.crop_resize) or
    'workers' (Pillow, per image). data.crop_on as set; for auto, the device on a GPU, the
    workers where the device cannot serve (views made in the workers, nearest resizing), and on a
    CPU the path the end-to-end measurement for this CPU kind found faster (facts.crop_speeds:
    training images/s of a short streamed run, both paths, the same files), the workers where
    none was made. The note says which and why."""
    if draft["data.large_images"] != "full":
        return {"crop_on": None, "crop_reason": ""}
    asked = draft["data.crop_on"]
    if asked != "auto":
        where, why = asked, f"data.crop_on {asked}"
    elif draft["data.augment_on"] == "workers":
        where, why = "workers", "data.augment_on workers makes both views in the workers"
    elif draft["augment.interpolation"] == "nearest":
        where, why = "workers", "augment.interpolation nearest: the device resizes with Pillow's bicubic or bilinear"
    elif trains_on_gpu(draft, facts.hardware):
        where, why = "device", "auto: on a GPU the workers only decode"
    else:
        where, why = cpu_crops(facts.crop_speeds, facts.hardware.cpu_kind)
    said = ("on the training device, the whole batch at once, from photos the workers decode" if where == "device"
            else "in the data workers by Pillow, per image")
    choose = "" if asked != "auto" else "; data.crop_on to choose"
    draft.decide("crops", {}, f"crops: each view's crop cut and resized {said} ({why}{choose})")
    return {"crop_on": where, "crop_reason": why}


def cpu_crops(speeds, cpu_kind: str) -> tuple[str, str]:
    """(where, why) on a CPU: the path measured faster end to end on this CPU kind, else on the
    CPU kind measured; the workers where no measurement holds both, or the two are within their
    spreads (the per-image path leaves the training loop its cores)."""
    mine = [e for e in speeds if e["cpu_kind"] == cpu_kind] or list(speeds)
    if not mine:
        return "workers", "auto: on a CPU; no end-to-end measurement of both paths is packaged"
    e = mine[0]
    measured = (f"{e['device_images_per_s']:.0f} training images/s with the device's crops against "
                f"{e['workers_images_per_s']:.0f} with the workers', {e['what']}, on a CPU with {e['cpu_kind']}")
    if e["faster"] == "device":
        return "device", f"auto: on a CPU measured faster end to end: {measured}"
    return "workers", f"auto: on a CPU {'within the spread of' if e['faster'] == 'neither' else 'measured faster than'} "\
                      f"the device's crops end to end: {measured}"


def launch_rank(launch: Launch, devices: int) -> int:
    """This process's global rank: torchrun's and SLURM's own; under Lightning's launcher the
    node's rank times train.devices plus the local rank; else 0."""
    if launch.rank is not None:
        return launch.rank
    if launch.local_rank is not None:
        return (launch.node_rank or 0) * devices + launch.local_rank
    return 0


def choose_precision(precision: str, on_gpu: bool, hw: Hardware) -> tuple[str, str]:
    """(Lightning's precision, why): train.precision as set, or for 'auto' bf16 mixed precision
    where the hardware runs it fast, else fp32. On a CPU the environment variable BYOL_CPU_BF16
    (1 or 0) overrides the probe, so that a test suite takes either path on any CPU; the reason
    then says so."""
    if precision == "32":
        return "32-true", "train.precision 32"
    if precision in ("bf16", "16"):
        return f"{precision}-mixed", f"train.precision {precision}"
    if on_gpu:
        if hw.cuda_bf16:
            return "bf16-mixed", "auto: this GPU computes in bf16"
        return "16-mixed", "auto: this GPU has no bf16, fp16 with loss scaling instead"
    if hw.cpu_bf16_forced is not None:
        chose = "bf16" if hw.cpu_bf16_forced == "1" else "fp32"
        return ("bf16-mixed" if chose == "bf16" else "32-true"), (
            f"auto: BYOL_CPU_BF16={hw.cpu_bf16_forced} in the environment chose {chose}")
    if hw.cpu_bf16:
        return "bf16-mixed", "auto: this CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX)"
    return "32-true", "auto: this CPU has no AVX-512 BF16 or AMX, so fp32 is the fast path"


def loader_workers(asked: int | None, cores: int, local: int) -> tuple[int, str]:
    """data.num_workers, or where unset: this process's share of the cores (cores over the
    training processes of this machine), less one for the training loop itself; at least 1."""
    if asked is not None:
        return asked, f"data.num_workers {asked}"
    workers = max(1, cores // max(1, local) - 1)
    return workers, (f"{workers} worker process{'es' if workers > 1 else ''} ({cores} cores, one kept for the "
                     "training loop; data.num_workers to choose)")


BATCH_STEPS = 4  # with no batch set, the batch leaves at least this many steps an epoch ...
MIN_BATCH = 8  # ... and is at least this many images (batch norm needs a few), where the data has them


def decide_batch(draft: Draft, images: int | None, world: int) -> None:
    """With train.batch_size set by no file, command line or dict: where the training images give
    fewer than BATCH_STEPS batches an epoch, the largest power of two that gives that many (at
    least MIN_BATCH, or what the images allow), with a note. A batch that was set and that the
    images cannot fill once is one DataError that names the key, where it was set, and the
    batch that would fit."""
    if images is None:
        return
    batch, per_rank = draft["train.batch_size"], images // world
    fits = 1 << (max(per_rank, 1).bit_length() - 1)  # the largest power of two the images fill
    if per_rank < 2:
        raise DataError(f"{draft['data.path']!r} has {images} usable training images for {world} training "
                        f"process{'es' * (world > 1)}: batch norm needs batches of at least 2 images each")
    if "train.batch_size" in draft.given:
        if per_rank < batch:
            raise DataError(f"{draft['data.path']!r} has {images} usable training images, fewer than one batch of "
                            f"train.batch_size {batch} (from {draft.given['train.batch_size']})"
                            + (f" for each of {world} processes" if world > 1 else "")
                            + f": set train.batch_size to {fits} or fewer, or leave it unset to have it chosen")
        return
    chosen = min(batch, max(1 << (max(per_rank // BATCH_STEPS, 1).bit_length() - 1), min(MIN_BATCH, fits)))
    if chosen != batch:
        draft.decide("batch", {"train.batch_size": chosen},
                     f"train.batch_size {batch} -> {chosen}: {images} training images give "
                     f"{per_rank // chosen} steps an epoch of {chosen} (a batch is at most 1/{BATCH_STEPS} of the "
                     "images where they allow; set train.batch_size to choose another)")


def steps_per_epoch(batch: int, accumulate: int, world: int, images: int) -> int:
    """Optimiser steps per epoch: each process's share of the images in whole batches, over the
    gradient accumulation."""
    return math.ceil(images // world // batch / accumulate)


def budget(draft: Draft, images: int | None, per_epoch: int, grayscale: bool, measurements: list[dict]) -> None:
    """The budget line (byol.training.budget.budget_note) for this run's images and steps, from
    the measurements of similar data the facts hold."""
    from byol.training.budget import budget_note

    if images is None:
        return
    for line in budget_note(draft["train.epochs"], per_epoch, images, draft["data.image_size"], grayscale,
                            measurements):
        draft.decide("budget", {}, line)


# -- the plan's lines ----------------------------------------------------------------------


def describe_precision(precision: str, reason: str | None = None) -> str:
    """The precision and why it was chosen, as the plan line and the demo say it."""
    return f"precision: {PRECISION_NAMES.get(precision, precision)}" + (f" ({reason})" if reason else "")


def plan_line(plan: Plan) -> str:
    """One line said at the start: images, size, steps, global batch, learning rate, precision."""
    cfg = plan.cfg
    t, o = cfg.train, cfg.optim
    images = "an unknown number of" if plan.train_images is None else plan.train_images
    used = (plan.train_images or 0) // plan.world_size // t.batch_size * t.batch_size * plan.world_size
    left = (f" ({plan.train_images - used} left out of each epoch: the last partial batch)"
            if plan.train_images and used < plan.train_images else "")
    return (f"plan: {images} training images at {cfg.data.image_size} px, {t.epochs} epochs x {plan.steps_per_epoch} "
            f"steps = {t.epochs * plan.steps_per_epoch} steps of {plan.global_batch} images{left}; {o.name} lr "
            f"{plan.lr:.4g} ({o.base_lr:g} x {plan.global_batch}/256); "
            f"{describe_precision(plan.precision, plan.precision_reason)}" + "".join(f"; {p}" for p in view_plan(cfg)))


def view_plan(cfg: Config) -> list[str]:
    """What the plan line says of the resolution schedule (the side of each span of epochs, and
    the run's pixels against training at data.image_size throughout) and of multi-crop (the
    small crops, and their cost over the run against the two full views at each epoch's side,
    by pixel count: a full view goes through the online network forward and backward (about 3
    forward passes) and the target forward (1), a small crop through the online network only
    (3))."""
    from byol.core.augment import scheduled_size

    full, epochs, parts = cfg.data.image_size, cfg.train.epochs, []
    sides = [scheduled_size(cfg.train.resolution_schedule, e / epochs, full) for e in range(epochs)] or [full]
    if cfg.train.resolution_schedule and epochs:
        spans, start = [], 0
        for e in range(1, epochs + 1):
            if e == epochs or sides[e] != sides[start]:
                spans.append(f"{sides[start]} px (epoch{'s' if e - start > 1 else ''} {start + 1}"
                             + (f"-{e})" if e - start > 1 else ")"))
                start = e
        pixels = sum((side / full) ** 2 for side in sides) / epochs
        parts.append(f"views at {', '.join(spans)}: {pixels:.2f}x the pixels of {full} px throughout"
                     + ("" if sides[-1] == full else f"; the run ends below data.image_size {full} px, the side "
                        "the network is evaluated and exported at")
                     + ("" if 3 * min(sides) >= 2 * full else
                        f"; {min(sides)} px is below 2/3 of {full} px: with the random crop's zoom (about 1.45x) "
                        "those views show objects smaller than evaluation does (measured on CIFAR-10: a 16-px start "
                        "cost 1.7 kNN points over 10 epochs); start near 0.75 of the side"))
    a = cfg.augment
    if a.small_crops:
        compute = a.small_crops * 3 * a.small_side ** 2 * len(sides) / sum(2 * 4 * side ** 2 for side in sides)
        memory = a.small_crops * a.small_side ** 2 / (2 * max(sides) ** 2)
        parts.append(f"+ {a.small_crops} small crops of {a.small_side} px: about +{100 * compute:.0f} % compute over "
                     f"the run and +{100 * memory:.0f} % activation memory at {max(sides)} px (by pixel count; "
                     "small images run below the full matrix-multiply rate, so more in practice)")
    return parts
