"""Pretrain a ResNet-18 on CIFAR-10 with BYOL, then fine-tune it as a classifier.

    byol download cifar10 --root data/cifar10
    python examples/resnet_cifar10.py --cifar data/cifar10 --epochs 10 --per-class 1000

--cifar is a folder with the ImageFolder copy (train.tar.gz, test.tar.gz) or the official
python pickles (cifar-10-batches-py, from `byol download cifar10`). The pretrained backbone
is exported to .safetensors and loaded into a fresh ResNet-18 with the user's own key
names, then the whole network is fine-tuned with a linear head on `--labels-per-class`
labeled images; the same fine-tuning from a random initialisation is the baseline.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from byol.core.backbones import resnet18
from byol.checkpoint import export_backbone
from byol.config import load_config
from byol.data.image_sets import decode_to_memory, MemoryImages
from byol.data.listing import list_images
from byol.data.datasets import load_dataset
from byol.evaluation.protocols import ClassifierSettings, Inputs, train_classifier
from byol.core.model import feature_extractor
from byol.data.splits import first_per_class
from byol.training.pretrain import pretrain

CONFIG = Path(__file__).resolve().parents[1] / "src" / "byol" / "configs" / "cifar10.yaml"


def cifar(root: Path, split: str, per_class: int) -> MemoryImages:
    """The first `per_class` images of each class, from the tar copy or the official pickles."""
    tar = root / f"{split}.tar.gz"
    if tar.exists():
        return decode_to_memory(first_per_class(list_images(tar), per_class), 32)
    full = load_dataset("cifar10", root, split)
    keep = torch.cat([torch.nonzero(full.labels == c)[:per_class, 0] for c in range(10)]).sort().values
    return MemoryImages(full.images[keep], full.labels[keep], full.classes)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cifar", required=True, help="CIFAR-10 folder (tar copy or official pickles)")
    p.add_argument("--out", default="runs/example-resnet-cifar10")
    p.add_argument("--epochs", type=int, default=10, help="BYOL pretraining epochs")
    p.add_argument("--per-class", type=int, default=1000, help="pretraining images per class")
    p.add_argument("--labels-per-class", type=int, default=100, help="labeled images per class for fine-tuning")
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--width", type=float, default=0.25, help="ResNet-18 width (1.0 = the usual network)")
    p.add_argument("--test-images", type=int, default=10000)
    a, overrides = p.parse_known_args(argv)
    root, out = Path(a.cifar), Path(a.out)

    # 1. BYOL pretraining, as `byol pretrain --config configs/cifar10.yaml` would do it
    train_path = root / "train.tar.gz"
    data = (["--data.path", str(train_path), "--data.val_path", str(root / "test.tar.gz"),
             "--data.limit_per_class", str(a.per_class)] if train_path.exists() else
            ["--data.dataset", "cifar10", "--data.path", str(root), "--data.limit", str(10 * a.per_class)])
    cfg = load_config(CONFIG, [*data, "--model.backbone_args", f"{{stem: cifar, width: {a.width}}}",
                               "--train.epochs", str(a.epochs), "--train.knn_every", str(a.epochs),
                               "--train.out_dir", str(out / "pretrain"), *overrides])
    summary = pretrain(cfg, resume=(out / "pretrain" / "checkpoints" / "last.ckpt").exists())

    # 2. The weights load straight into the user's own network
    weights = export_backbone(summary["checkpoint"], out / "backbone.safetensors")
    pretrained = resnet18(stem="cifar", width=a.width)
    pretrained.load_state_dict(load_file(str(weights)))

    # 3. Fine-tune the whole network with a linear head, against a random initialisation
    train = cifar(root, "train", a.labels_per_class)
    test = cifar(root, "test", a.test_images // 10)
    results = {"pretrain_knn_top1": summary.get("knn_final_top1"), "labeled_images": len(train)}
    for name, net in (("byol", pretrained), ("random_init", resnet18(stem="cifar", width=a.width))):
        r = train_classifier(feature_extractor(net), 10, train, test, Inputs(cfg.augment.mean, cfg.augment.std, 32),
                             ClassifierSettings(epochs=a.finetune_epochs, lr=0.05, weight_decay=5e-4,
                                                batch_size=min(256, len(train)), fine_tune=True))
        results[f"finetune_{name}_top1"] = r["top1"]
    print(json.dumps(results))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
