"""Side by side: this project, lightly and byol-pytorch on the same images (B2 protocol).

Every library trains the same backbone class (resnet18-cifar at width 0.25) from the same
initial weights (drawn once from the seed), on the same 10,000 CIFAR-10 training images
(the first 1,000 of each class), for the same epochs at the same batch size. Each trained
backbone is then evaluated by one kNN function (k 200, T 0.1, cosine similarity, fp32; bank:
those 10,000 images), with the input normalisation that library trained with, on one of two
query sets (--split):
- val: the next 500 images of each class of the training file (5,000 images never trained on
  and never in the test set). Recipes are chosen on this split.
- test: the 10,000 test images. Reported once per recipe, on seeds never used for a choice.
Pretraining wall time covers the training loop only (no decoding, no kNN). Every library
trains on one device (--device: all on the CPU, the default, or all on the GPU); every row
records the device, the threads, its precision and its DataLoader workers, and a summary of
rows that differ in device, threads or (in an equal-precision comparison) precision is refused.

Two comparisons (--comparison):
- defaults: each library as its documentation runs it: this project with train.precision
  auto (bf16 autocast on a CPU with AVX-512 BF16 or AMX, else fp32) and channels_last;
  lightly's benchmark and byol-pytorch's README in fp32.
- fp32 / bf16: every library in that precision. bf16 runs this project with
  train.precision bf16, lightly's step under torch.autocast(bfloat16) (what Lightning's
  precision="bf16-mixed" does around a training step) and byol-pytorch's forward under
  torch.autocast, as its README's loop would be wrapped. bf16 is refused on a CPU without
  AVX-512 BF16 or AMX (emulated there, and slower than fp32).

    python benchmarks/compare.py --cifar DIR --split val --seeds 0,1 --libraries byol --set optim.base_lr=0.08
    python benchmarks/compare.py --cifar DIR --split test --seeds 100,101,102 --epochs 10 --comparison fp32
    python benchmarks/compare.py --rows seed100.jsonl seed101.jsonl seed102.jsonl

Prints one JSON object per library and seed (and for the untrained network), then one summary
object per library over the seeds: mean kNN top-1, mean gain over the untrained network,
mean pretraining time and the time ratio to this project.

--curve (every library) adds the kNN top-1 on the query split after every epoch,
with the pretraining seconds up to it; the evaluations' own time is left out of every time and
stated as curve_eval_seconds. benchmarks/time_to_accuracy.py reads those rows. --test-too
(with --split val) adds the final network's kNN on the test images, knn_top1_test: one run
gives a recipe's validation curve and its test figure, on seeds fresh to every choice.

The peers need torchvision, which does not import beside a CPU-only torch build: run this in
an environment that has torch + torchvision + lightly + byol-pytorch + this project (see
BENCHMARKS.md), so that all three train on the same torch build.

The peers' recipes, as their authors publish them:
- lightly: the BYOL model of lightly's CIFAR-10 benchmark
  (docs/source/getting_started/benchmarks/cifar10_benchmark.py): BYOLTransform with blur
  off in both views, projection head feature_dim-1024-256, prediction head 256-1024-256,
  target momentum 0.99 (constant, updated before each step), loss 0.5 (negcos(p0, z1) +
  negcos(p1, z0)), SGD lr 0.06 x batch/128, momentum 0.9, weight decay 5e-4 on every
  parameter, CosineAnnealingLR over the epochs (stepped per epoch), per-image augmentation
  in DataLoader workers (--workers, 2 here: the machine's 2 cores), ImageNet mean/std.
- byol-pytorch: its README usage: BYOL(net, image_size=32, hidden_layer='avgpool') with its
  defaults (projection 256, hidden 4096, moving average 0.99, its default augmentation,
  simplicial embeddings as the package's default), Adam lr 3e-4, update_moving_average()
  after each step. Its augmentation is torchvision's transforms applied to the whole batch
  tensor on the training device, so each parameter is drawn once per batch (every image of a
  batch gets the same crop, flip, jitter, grayscale and blur; colour jitter 0.8/0.8/0.8/0.2
  with p 0.3, blur p 0.2, the same pipeline for both views); it normalises with ImageNet
  mean/std inside the model; no DataLoader workers.
- this project: --config (default: the packaged cifar10 recipe), augmentation batched on the
  training device (per-image draws), CIFAR-10 mean/std, no DataLoader workers (the images are
  in memory).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIBRARIES = ("byol", "lightly", "byol-pytorch")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


VAL_PER_CLASS = 500  # the validation queries: the images after the first per_class of each class


def load_images(cifar: str, per_class: int, split: str):
    """(train MemoryImages: the first `per_class` images of each class, query MemoryImages: the
    next VAL_PER_CLASS of each class of the training file for split 'val', the test file for 'test')."""
    from byol.data.image_sets import decode_to_memory
    from byol.data.listing import ImageList, list_images
    from byol.data.splits import first_per_class

    train_tar, test_tar = os.path.join(cifar, "train.tar.gz"), os.path.join(cifar, "test.tar.gz")
    for f in (train_tar, test_tar):
        if not os.path.exists(f):
            sys.exit(f"compare: {f} not found; pass --cifar DIR (the folder holding train.tar.gz and test.tar.gz)")
    everything = list_images(train_tar)
    train_list = first_per_class(everything, per_class)
    train = decode_to_memory(train_list, 32)
    if split == "test":
        return train, test_images(cifar)
    used = set(train_list.items)
    head = first_per_class(ImageList(everything.root,
                                     [i for i in everything.items if i not in used],
                                     [lab for i, lab in zip(everything.items, everything.labels) if i not in used],
                                     everything.classes), VAL_PER_CLASS)
    return train, decode_to_memory(head, 32)


def test_images(cifar: str):
    """The 10,000 CIFAR-10 test images, decoded as the training images are."""
    from byol.data.image_sets import decode_to_memory
    from byol.data.listing import list_images

    return decode_to_memory(list_images(os.path.join(cifar, "test.tar.gz")), 32)


def initial_backbone(seed: int, width: float):
    """The backbone every library starts from: resnet18-cifar, weights drawn from `seed`."""
    from byol.core.backbones import resnet18

    torch.manual_seed(seed)
    return resnet18(stem="cifar", width=width)


def knn_top1(net, train, test, mean, std) -> dict:
    """The one evaluator: kNN (k 200, T 0.1) on the backbone's pooled features, fp32, bank `train`,
    queries `test` (the validation or the test split)."""
    import copy

    from byol.evaluation.protocols import extract_features, knn_accuracy

    if any(t.device.type != "cpu" for t in net.parameters()):  # evaluated alike for every device: on the CPU
        net = copy.deepcopy(net).cpu()
    bank = extract_features(net, train.images, mean, std, image_size=32)
    queries = extract_features(net, test.images, mean, std, image_size=32)
    result = knn_accuracy(bank, train.labels, queries, test.labels, k=200, temperature=0.1)
    return {"knn_top1": round(100 * result["top1"], 2), "knn_top5": round(100 * result["top5"], 2)}


class Curve:
    """--curve: kNN top-1 on the query split after every epoch (the same knn_top1), with the
    pretraining seconds up to that epoch's end. The evaluation's own time is kept out of the
    pretraining time and reported apart (`excluded`)."""

    def __init__(self, train, queries, mean, std):
        self.train, self.queries, self.mean, self.std = train, queries, mean, std
        self.points: list[list] = []
        self.excluded = 0.0

    def record(self, net, epoch: int, since_start: float) -> None:
        """After `epoch` epochs, `since_start` seconds after training began (evaluation included)."""
        begin = time.perf_counter()
        self.points.append([epoch, round(since_start - self.excluded, 1),
                            knn_top1(net, self.train, self.queries, self.mean, self.std)["knn_top1"]])
        self.excluded += time.perf_counter() - begin

    def row_fields(self) -> dict:
        """What a result row holds of the curve."""
        return {"curve": self.points, "curve_eval_seconds": round(self.excluded, 1)}


def curve_callback(curve: Curve):
    """A Lightning callback that feeds `curve` at the end of every training epoch."""
    import lightning as L

    class EveryEpoch(L.Callback):
        def on_train_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            curve.record(module.backbone, trainer.current_epoch + 1, time.perf_counter() - self.start)

    return EveryEpoch()


# ---------------------------------------------------------------------------------------------
# The three trainers. Each returns (trained backbone, seconds of training, normalisation, info).


def train_byol(net, train, args):
    from byol.config import load_config
    from byol.training.pretrain import pretrain

    configs = args.config or ["cifar10"]  # a packaged recipe, by name
    with tempfile.TemporaryDirectory() as out:
        precision = {"defaults": "auto", "fp32": "32", "bf16": "bf16"}[args.comparison]
        overrides = ["--data.path", os.path.join(args.cifar, "train.tar.gz"),  # the same images, decoded alike
                     "--data.limit_per_class", str(args.per_class), "--train.epochs", str(args.epochs),
                     "--train.precision", precision, "--train.accelerator", "gpu" if args.device == "cuda" else "cpu",
                     "--train.batch_size", str(args.batch_size), "--train.seed", str(args.seed),
                     "--model.backbone_args", f"{{stem: cifar, width: {args.width}}}",
                     "--train.knn_every", "0", "--train.out_dir", out, "--log.progress", "false",
                     "--log.tensorboard", "false", "--log.report", "false"]
        for item in args.set:
            key, _, value = item.partition("=")
            overrides += [f"--{key}", value]
        cfg = load_config(configs, overrides)
        curve = Curve(train, args.queries, cfg.augment.mean, cfg.augment.std) if args.curve else None
        summary = pretrain(cfg, net=net, callbacks=[curve_callback(curve)] if curve else None)
        info = {"config": [os.path.relpath(str(c), ROOT) if os.path.exists(str(c)) else str(c) for c in configs],
                "set": args.set, "precision": summary["precision"], "steps": summary["steps"],
                "channels_last": cfg.train.channels_last, "workers": 0}
        if curve:
            info.update(curve.row_fields())
        if args.target_knn:  # the EMA target's backbone, for information
            import copy

            state = torch.load(os.path.join(out, "checkpoints", "last.ckpt"), weights_only=True)["state_dict"]
            target = copy.deepcopy(net)
            prefix = "model.target.net."
            target.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            info["target"] = target
    return net, summary["wall_seconds"] - (curve.excluded if curve else 0.0), (cfg.augment.mean, cfg.augment.std), info


class PILImages(torch.utils.data.Dataset):
    """uint8 (N, 3, H, W) images as PIL images through a per-image transform (lightly's way)."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i].permute(1, 2, 0).numpy()))


def train_lightly(net, train, args):
    import copy

    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform

    transform = BYOLTransform(view_1_transform=BYOLView1Transform(input_size=32, gaussian_blur=0.0),
                              view_2_transform=BYOLView2Transform(input_size=32, gaussian_blur=0.0))
    g = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(PILImages(train.images, transform), batch_size=args.batch_size,
                                         shuffle=True, drop_last=True, num_workers=args.workers,
                                         persistent_workers=args.workers > 0, generator=g)
    backbone = net
    projection_head = BYOLProjectionHead(net.feature_dim, 1024, 256)
    prediction_head = BYOLPredictionHead(256, 1024, 256)
    backbone_momentum = copy.deepcopy(backbone)
    projection_head_momentum = copy.deepcopy(projection_head)
    deactivate_requires_grad(backbone_momentum)
    deactivate_requires_grad(projection_head_momentum)
    criterion = NegativeCosineSimilarity()
    params = [*backbone.parameters(), *projection_head.parameters(), *prediction_head.parameters()]
    optim = torch.optim.SGD(params, lr=6e-2 * args.batch_size / 128, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optim, args.epochs)
    for m in (backbone, projection_head, prediction_head, backbone_momentum, projection_head_momentum):
        m.to(args.device).train()

    def forward(x):
        return prediction_head(projection_head(backbone(x).flatten(start_dim=1)))

    def forward_momentum(x):
        return projection_head_momentum(backbone_momentum(x).flatten(start_dim=1)).detach()

    bf16 = peer_bf16(args)
    curve = Curve(train, args.queries, IMAGENET_MEAN, IMAGENET_STD) if args.curve else None
    steps = 0
    start = time.perf_counter()
    for epoch in range(args.epochs):
        for x0, x1 in loader:
            x0, x1 = x0.to(args.device, non_blocking=True), x1.to(args.device, non_blocking=True)
            update_momentum(backbone, backbone_momentum, m=0.99)
            update_momentum(projection_head, projection_head_momentum, m=0.99)
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16):  # Lightning's bf16-mixed
                p0, z0, p1, z1 = forward(x0), forward_momentum(x0), forward(x1), forward_momentum(x1)
                loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
            optim.zero_grad()
            loss.backward()
            optim.step()
            steps += 1
        scheduler.step()
        if curve:
            curve.record(backbone, epoch + 1, time.perf_counter() - start)
    seconds = time.perf_counter() - start - (curve.excluded if curve else 0.0)
    import lightly

    info = {"version": lightly.__version__, "steps": steps, "precision": "bf16-mixed" if bf16 else "32-true",
            "channels_last": False, "workers": args.workers}
    if curve:
        info.update(curve.row_fields())
    return backbone, seconds, (IMAGENET_MEAN, IMAGENET_STD), info


def train_byol_pytorch(net, train, args):
    from byol_pytorch import BYOL

    learner = BYOL(net, image_size=32, hidden_layer="avgpool").to(args.device)
    opt = torch.optim.Adam(learner.parameters(), lr=3e-4)
    g = torch.Generator().manual_seed(args.seed)
    n = len(train.images)
    bf16 = peer_bf16(args)
    curve = Curve(train, args.queries, IMAGENET_MEAN, IMAGENET_STD) if args.curve else None
    steps = 0
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=g)
        for i in range(n // args.batch_size):
            images = train.images[order[i * args.batch_size:(i + 1) * args.batch_size]].to(args.device).float() / 255
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16):
                loss = learner(images)
            opt.zero_grad()
            loss.backward()
            opt.step()
            learner.update_moving_average()
            steps += 1
        if curve:
            curve.record(net, epoch + 1, time.perf_counter() - start)
    seconds = time.perf_counter() - start - (curve.excluded if curve else 0.0)
    from importlib.metadata import version

    info = {"version": version("byol-pytorch"), "steps": steps, "precision": "bf16-mixed" if bf16 else "32-true",
            "channels_last": False, "workers": 0}
    if curve:
        info.update(curve.row_fields())
    return net, seconds, (IMAGENET_MEAN, IMAGENET_STD), info


def peer_bf16(args) -> bool:
    """The peers run bf16 autocast only in the bf16 comparison; as documented (defaults), fp32."""
    return args.comparison == "bf16"


TRAINERS = {"byol": train_byol, "lightly": train_lightly, "byol-pytorch": train_byol_pytorch}


def run_one(args) -> dict:
    train, queries = load_images(args.cifar, args.per_class, args.split)
    net = initial_backbone(args.seed, args.width)
    if args.one == "untrained":
        from byol.config import load_config

        cfg = load_config(args.config or ["cifar10"])
        row = {"library": "untrained", "pretrain_seconds": 0.0, "train_images": len(train), "query_images": len(queries)}
        row.update({f"{k}_own_norm": v for k, v in knn_top1(net, train, queries, cfg.augment.mean,
                                                             cfg.augment.std).items()})
        row.update({f"{k}_imagenet_norm": v for k, v in knn_top1(net, train, queries, IMAGENET_MEAN,
                                                                  IMAGENET_STD).items()})
        return row
    args.queries = queries
    trained, seconds, (mean, std), info = TRAINERS[args.one](net, train, args)
    target = info.pop("target", None)
    row = {"library": args.one, "pretrain_seconds": round(seconds, 1), "train_images": len(train),
           "query_images": len(queries), **knn_top1(trained, train, queries, mean, std), **info}
    if args.one == "byol" and args.label:
        row["label"] = args.label
    if target is not None:
        row["knn_top1_target"] = knn_top1(target, train, queries, mean, std)["knn_top1"]
    if args.test_too and args.split == "val":  # the same final network, once, on the test images
        row["knn_top1_test"] = knn_top1(trained, train, test_images(args.cifar), mean, std)["knn_top1"]
    return row


def summarize(rows: list[dict]) -> list[dict]:
    """Per library over the seeds: mean kNN top-1, mean gain over the untrained network of the same
    seed (with the normalisation that library trained with), mean time, and time / this project's."""
    def mean(values):
        return round(sum(values) / len(values), 2) if values else None

    untrained = {r["seed"]: r for r in rows if r["library"] == "untrained" and "error" not in r}
    byol_time = mean([r["pretrain_seconds"] for r in rows if r["library"] == "byol" and "error" not in r])
    out = []
    for lib in dict.fromkeys(r["library"] for r in rows if r["library"] != "untrained"):
        mine = [r for r in rows if r["library"] == lib and "error" not in r]
        if not mine:
            continue
        gains = [r["knn_top1"] - untrained[r["seed"]]["knn_top1_" + ("own_norm" if lib == "byol" else "imagenet_norm")]
                 for r in mine if r["seed"] in untrained]
        seconds = mean([r["pretrain_seconds"] for r in mine])
        out.append({"summary": lib, "seeds": [r["seed"] for r in mine], "knn_top1_mean": mean([r["knn_top1"] for r in mine]),
                    "knn_top1_each": [r["knn_top1"] for r in mine], "gain_over_untrained_mean": mean(gains),
                    **({"knn_top1_test_mean": mean([r["knn_top1_test"] for r in mine]),
                        "knn_top1_test_each": [r["knn_top1_test"] for r in mine]}
                       if all("knn_top1_test" in r for r in mine) else {}),
                    "pretrain_seconds_mean": seconds,
                    "time_ratio_to_byol": round(seconds / byol_time, 2) if byol_time else None,
                    "precision": sorted({r.get("precision") for r in mine})})
    return out


SETTINGS = ("comparison", "split", "epochs", "batch", "backbone", "train_images", "query_images", "cpu_kind", "device",
            "threads")


def read_json_lines(paths: list[str], who: str) -> list[dict]:
    """Every JSON line of the files; a file that cannot be read ends the script with one line
    that starts with `who` and names the file."""
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                rows += [json.loads(line) for line in f if line.strip()]
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"{who} {path}: {e}")
    return rows


def summarize_files(paths: list[str]) -> int:
    """The summary of rows saved from earlier runs; refuses rows whose settings differ."""
    rows = [r for r in read_json_lines(paths, "compare: --rows") if "library" in r]  # not the summaries those runs printed
    if not rows:
        sys.exit(f"compare: --rows {' '.join(paths)}: no result rows (JSON lines with a 'library')")
    for key in SETTINGS:
        values = sorted({str(r.get(key)) for r in rows})
        if len(values) > 1:
            sys.exit(f"compare: --rows: the rows differ in {key} ({', '.join(values)}): summarize each setting apart")
    if rows[0].get("comparison") != "defaults" and len({str(r.get("precision")) for r in rows if "precision" in r}) > 1:
        sys.exit(f"compare: --rows: the {rows[0].get('comparison')} comparison holds rows of several precisions "
                 f"({', '.join(sorted({str(r.get('precision')) for r in rows if 'precision' in r}))}): "
                 "an equal-precision comparison runs every library in one")
    seen = [(r["seed"], r["library"]) for r in rows]
    twice = sorted({f"seed {s} {lib}" for s, lib in seen if seen.count((s, lib)) > 1})
    if twice:
        sys.exit(f"compare: --rows: {', '.join(twice)} appear more than once: give each run's file once")
    common = {k: rows[0].get(k) for k in ("benchmark", *SETTINGS, "knn_k", "knn_temperature")}
    common.update(torch=sorted({r.get("torch") for r in rows}), commit=sorted({r.get("commit") for r in rows}))
    for line in summarize(rows):
        print(json.dumps({**common, **line}), flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", help="folder with CIFAR-10's train.tar.gz and test.tar.gz (needed unless --rows)")
    p.add_argument("--libraries", default="untrained," + ",".join(LIBRARIES),
                   help="comma-separated, in order: untrained, byol, lightly, byol-pytorch")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0", help="comma-separated seeds: initial weights and data order")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="kNN queries: val (held-out training images; for choosing) or test (for reporting)")
    p.add_argument("--comparison", choices=("defaults", "fp32", "bf16"), default="defaults",
                   help="defaults: each library as documented; fp32 / bf16: every library in that precision")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2, help="lightly's DataLoader workers")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where every library trains: all on the CPU (default) or all on the GPU; the kNN "
                        "evaluation is the same fp32 CPU function for all")
    p.add_argument("--config", action="append", help="this project's config file(s) (default configs/cifar10.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="this project's config overrides, e.g. --set optim.base_lr=0.1")
    p.add_argument("--target-knn", action="store_true", help="also the kNN of this project's EMA target backbone")
    p.add_argument("--curve", action="store_true",
                   help="every library: kNN on the query split after every epoch, with the pretraining seconds "
                        "so far (the evaluations' own time left out and reported as curve_eval_seconds); "
                        "benchmarks/time_to_accuracy.py reads these rows")
    p.add_argument("--test-too", action="store_true",
                   help="with --split val: also the final network's kNN top-1 on the 10,000 test images "
                        "(knn_top1_test), for the seeds that report a recipe chosen before them; the curve "
                        "and every choice stay on the validation split")
    p.add_argument("--label", help="a name for this project's runs in the rows (e.g. byol+levers); default byol")
    p.add_argument("--out", help="also append the result rows (not the summaries) to this JSONL file, e.g. "
                                 "benchmarks/results/compare.jsonl")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=None, help="one seed (the same as --seeds S)")
    p.add_argument("--rows", nargs="+", metavar="FILE",
                   help="run nothing: print the summary of the rows that earlier runs printed (JSON lines, "
                        "e.g. one file per seed); every row must come from the same comparison, split and epochs")
    args = p.parse_args(argv)
    if args.test_too and args.split != "val":
        p.error("--test-too goes with --split val: with --split test the kNN figures are the test set's already")
    if args.rows:
        return summarize_files(args.rows)
    if not args.cifar:
        p.error("give --cifar DIR (CIFAR-10's train.tar.gz and test.tar.gz), or --rows FILE to summarize saved rows")
    if args.one:
        print(json.dumps(run_one(args)), flush=True)
        return 0
    from byol.training.facts import cpu_bf16_hardware

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("compare: --device cuda, but torch sees no GPU here; use --device cpu")
    if args.comparison == "bf16" and args.device == "cpu" and not cpu_bf16_hardware():
        sys.exit("compare: this CPU has no AVX-512 BF16 or AMX: bf16 is emulated here and slower than fp32, so the "
                 "bf16 comparison is not run; use --comparison fp32 (the defaults comparison runs fp32 here too)")
    try:
        seeds = [args.seed] if args.seed is not None else [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        sys.exit(f"compare: --seeds {args.seeds!r}: give whole numbers separated by commas, e.g. 100,101,102")
    libraries = [s.strip() for s in args.libraries.split(",") if s.strip()]
    for lib in libraries:
        if lib not in ("untrained", *LIBRARIES):
            sys.exit(f"compare: unknown library {lib!r}; choose from untrained, {', '.join(LIBRARIES)}")
    common = {"benchmark": "B2-compare", "comparison": args.comparison, "split": args.split, "epochs": args.epochs,
              "batch": args.batch_size, "backbone": f"resnet18-cifar@{args.width:g}",
              "train_images": 10 * args.per_class, "query_images": 10000 if args.split == "test" else 10 * VAL_PER_CLASS,
              "knn_k": 200, "knn_temperature": 0.1, "torch": torch.__version__, "cpu_kind": cpu_kind(),
              "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
              "threads": torch.get_num_threads(), "commit": commit(),
              "command": " ".join(["python", "benchmarks/compare.py", *(sys.argv[1:] if argv is None else argv)])}
    rows = []
    for seed in seeds:
        for lib in libraries:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", lib, "--seed", str(seed),
                   *_passthrough(argv)]
            proc = subprocess.run(cmd, capture_output=True, text=True)  # each in a fresh process
            if proc.returncode != 0:
                row = {**common, "seed": seed, "library": lib, "error": proc.stderr.strip().splitlines()[-3:]}
            else:
                row = {**common, "seed": seed, **json.loads(proc.stdout.strip().splitlines()[-1])}
            rows.append(row)
            emit(row, args.out)
    read = next(({k: r[k] for k in ("train_images", "query_images")} for r in rows if "error" not in r), {})
    for line in summarize(rows):  # the images the runs read (the files may hold fewer than asked)
        print(json.dumps({**common, **read, **line}), flush=True)
    return 0


def emit(row: dict, out: str | None) -> None:
    from bench import emit as written

    written(row, out)


def cpu_kind() -> str:
    from bench import cpu_kind as kind

    return kind()


def commit() -> str:
    from bench import commit as asked

    return asked()


def _passthrough(argv):
    """The command line for one run: everything but --libraries and the seeds."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--libraries", "--seeds", "--seed"):
            skip = True
            continue
        if a.startswith(("--libraries=", "--seeds=", "--seed=")):
            continue
        out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())
