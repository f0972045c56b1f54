"""Side by side: this project, lightly and byol-pytorch on the same images (B2 protocol).

Every library trains the same backbone class (resnet18-cifar at width 0.25) from the same
initial weights (drawn once from the seed), on the same 10,000 CIFAR-10 training images
(the first 1,000 of each class), for the same epochs at the same batch size. Each trained
backbone is then evaluated by one kNN function (k 200, T 0.1, cosine similarity; bank: those
10,000 images, queries: all 10,000 test images), with the input normalisation that library
trained with. Pretraining wall time covers the training loop only (no decoding, no kNN).

    python benchmarks/compare.py --cifar DIR --epochs 10 --seed 0            # all three
    python benchmarks/compare.py --cifar DIR --libraries byol --epochs 30 \
        --config configs/cifar10.yaml --set train.seed=1                     # one, a variant

Prints one JSON object per library (and one for the untrained network) on stdout.

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
  in DataLoader workers.
- byol-pytorch: its README usage: BYOL(net, image_size=32, hidden_layer='avgpool') with its
  defaults (projection 256, hidden 4096, moving average 0.99, its default augmentation,
  simplicial embeddings as the package's default), Adam lr 3e-4, update_moving_average()
  after each step.
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


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_images(cifar: str, per_class: int):
    """(train MemoryImages: the first `per_class` images of each class, test MemoryImages)."""
    from byol.data.images import decode_to_memory, list_images
    from byol.data.images import first_per_class

    train_tar, test_tar = os.path.join(cifar, "train.tar.gz"), os.path.join(cifar, "test.tar.gz")
    for f in (train_tar, test_tar):
        if not os.path.exists(f):
            sys.exit(f"compare: {f} not found; pass --cifar DIR (the folder holding train.tar.gz and test.tar.gz)")
    train = decode_to_memory(first_per_class(list_images(train_tar), per_class), 32)
    test = decode_to_memory(list_images(test_tar), 32)
    return train, test


def initial_backbone(seed: int, width: float):
    """The backbone every library starts from: resnet18-cifar, weights drawn from `seed`."""
    from byol.core.backbones import resnet18

    torch.manual_seed(seed)
    return resnet18(stem="cifar", width=width)


def knn_top1(net, train, test, mean, std) -> dict:
    """The one evaluator: kNN (k 200, T 0.1) on the backbone's pooled features, fp32."""
    from byol.evaluation.protocols import extract_features, knn_accuracy

    bank = extract_features(net, train.images, mean, std, image_size=32)
    queries = extract_features(net, test.images, mean, std, image_size=32)
    result = knn_accuracy(bank, train.labels, queries, test.labels, k=200, temperature=0.1)
    return {"knn_top1": round(100 * result["top1"], 2), "knn_top5": round(100 * result["top5"], 2)}


# ---------------------------------------------------------------------------------------------
# The three trainers. Each returns (trained backbone, seconds of training, normalisation, info).


def train_byol(net, train, args):
    from byol.config import load_config
    from byol.training.pretrain import pretrain

    configs = args.config or ["cifar10"]  # a packaged recipe, by name
    with tempfile.TemporaryDirectory() as out:
        overrides = ["--data.path", os.path.join(args.cifar, "train.tar.gz"),  # the same images, decoded alike
                     "--data.limit_per_class", str(args.per_class), "--train.epochs", str(args.epochs),
                     "--train.batch_size", str(args.batch_size), "--train.seed", str(args.seed),
                     "--model.backbone_args", f"{{stem: cifar, width: {args.width}}}",
                     "--train.knn_every", "0", "--train.out_dir", out, "--log.progress", "false",
                     "--log.tensorboard", "false", "--log.report", "false"]
        for item in args.set:
            key, _, value = item.partition("=")
            overrides += [f"--{key}", value]
        cfg = load_config(configs, overrides)
        summary = pretrain(cfg, net=net)
        info = {"config": [os.path.relpath(str(c), ROOT) if os.path.exists(str(c)) else str(c) for c in configs],
                "set": args.set, "precision": summary["precision"], "steps": summary["steps"]}
        if args.target_knn:  # the EMA target's backbone, for information
            import copy

            state = torch.load(os.path.join(out, "checkpoints", "last.ckpt"), weights_only=True)["state_dict"]
            target = copy.deepcopy(net)
            prefix = "model.target.net."
            target.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            info["target"] = target
    return net, summary["wall_seconds"], (cfg.augment.mean, cfg.augment.std), info


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
        m.train()

    def forward(x):
        return prediction_head(projection_head(backbone(x).flatten(start_dim=1)))

    def forward_momentum(x):
        return projection_head_momentum(backbone_momentum(x).flatten(start_dim=1)).detach()

    steps = 0
    start = time.perf_counter()
    for _ in range(args.epochs):
        for x0, x1 in loader:
            update_momentum(backbone, backbone_momentum, m=0.99)
            update_momentum(projection_head, projection_head_momentum, m=0.99)
            p0, z0, p1, z1 = forward(x0), forward_momentum(x0), forward(x1), forward_momentum(x1)
            loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
            optim.zero_grad()
            loss.backward()
            optim.step()
            steps += 1
        scheduler.step()
    seconds = time.perf_counter() - start
    import lightly

    return backbone, seconds, (IMAGENET_MEAN, IMAGENET_STD), {"version": lightly.__version__, "steps": steps,
                                                             "precision": "32-true", "workers": args.workers}


def train_byol_pytorch(net, train, args):
    from byol_pytorch import BYOL

    learner = BYOL(net, image_size=32, hidden_layer="avgpool")
    opt = torch.optim.Adam(learner.parameters(), lr=3e-4)
    g = torch.Generator().manual_seed(args.seed)
    n = len(train.images)
    steps = 0
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(n, generator=g)
        for i in range(n // args.batch_size):
            images = train.images[order[i * args.batch_size:(i + 1) * args.batch_size]].float() / 255
            loss = learner(images)
            opt.zero_grad()
            loss.backward()
            opt.step()
            learner.update_moving_average()
            steps += 1
    seconds = time.perf_counter() - start
    from importlib.metadata import version

    return net, seconds, (IMAGENET_MEAN, IMAGENET_STD), {"version": version("byol-pytorch"), "steps": steps,
                                                        "precision": "32-true"}


TRAINERS = {"byol": train_byol, "lightly": train_lightly, "byol-pytorch": train_byol_pytorch}


def run_one(args) -> dict:
    train, test = load_images(args.cifar, args.per_class)
    net = initial_backbone(args.seed, args.width)
    if args.one == "untrained":
        from byol.config import load_config

        cfg = load_config(args.config or ["cifar10"])
        row = {"library": "untrained", "pretrain_seconds": 0.0}
        row.update({f"{k}_own_norm": v for k, v in knn_top1(net, train, test, cfg.augment.mean, cfg.augment.std).items()})
        row.update({f"{k}_imagenet_norm": v for k, v in knn_top1(net, train, test, IMAGENET_MEAN, IMAGENET_STD).items()})
        return row
    trained, seconds, (mean, std), info = TRAINERS[args.one](net, train, args)
    target = info.pop("target", None)
    row = {"library": args.one, "pretrain_seconds": round(seconds, 1), **knn_top1(trained, train, test, mean, std),
           **info}
    if target is not None:
        row["knn_top1_target"] = knn_top1(target, train, test, mean, std)["knn_top1"]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", required=True, help="folder with CIFAR-10's train.tar.gz and test.tar.gz")
    p.add_argument("--libraries", default="untrained," + ",".join(LIBRARIES),
                   help="comma-separated, in order: untrained, byol, lightly, byol-pytorch")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="initial weights and data order")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2, help="lightly's DataLoader workers")
    p.add_argument("--config", action="append", help="this project's config file(s) (default configs/cifar10.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="this project's config overrides, e.g. --set optim.base_lr=0.1")
    p.add_argument("--target-knn", action="store_true", help="also the kNN of this project's EMA target backbone")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args)), flush=True)
        return 0
    common = {"benchmark": "B2-compare", "epochs": args.epochs, "seed": args.seed, "batch": args.batch_size,
              "backbone": f"resnet18-cifar@{args.width:g}", "train_images": 10 * args.per_class,
              "test_images": 10000, "knn_k": 200, "knn_temperature": 0.1, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "commit": commit()}
    for lib in [s.strip() for s in args.libraries.split(",") if s.strip()]:
        if lib not in ("untrained", *LIBRARIES):
            sys.exit(f"compare: unknown library {lib!r}; choose from untrained, {', '.join(LIBRARIES)}")
        cmd = [sys.executable, os.path.abspath(__file__), "--one", lib, *_passthrough(argv)]
        proc = subprocess.run(cmd, capture_output=True, text=True)  # each in a fresh process
        if proc.returncode != 0:
            print(json.dumps({**common, "library": lib, "error": proc.stderr.strip().splitlines()[-3:]}), flush=True)
            continue
        print(json.dumps({**common, **json.loads(proc.stdout.strip().splitlines()[-1])}), flush=True)
    return 0


def _passthrough(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "--libraries":
            skip = True
            continue
        if a.startswith("--libraries="):
            continue
        out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())
