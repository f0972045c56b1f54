"""The documentation's plain-PyTorch example, run as written on real images: does it beat the
untrained network?

Runs the training loop of docs/python.md ("The method in plain PyTorch") from `model = BYOL(`
on, with its `net` a width-0.25 CIFAR ResNet-18 as the page has it and `loader` 5,000 CIFAR-10
training images (the first 500 of each class) in shuffled batches of 128, for as many
passes as fit in --steps steps. Prints the kNN top-1 (k 200, T 0.1; bank: those 5,000
images, queries: the 10,000 test images) of the same network before and after, as JSON.

    python benchmarks/readme_example.py --cifar DIR [--steps 273] [--seed 0]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from byol.core.backbones import resnet18
    from byol.data.image_sets import decode_to_memory
    from byol.data.listing import list_images
    from byol.evaluation.protocols import extract_features, knn_accuracy
    from byol.data.splits import first_per_class

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", required=True, help="folder with CIFAR-10's train.tar.gz and test.tar.gz")
    p.add_argument("--steps", type=int, default=273, help="training steps (7 passes over 5,000 images at 128)")
    p.add_argument("--per-class", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    train_tar, test_tar = os.path.join(args.cifar, "train.tar.gz"), os.path.join(args.cifar, "test.tar.gz")
    for f in (train_tar, test_tar):
        if not os.path.exists(f):
            sys.exit(f"readme_example: {f} not found; pass --cifar DIR")
    train = decode_to_memory(first_per_class(list_images(train_tar), args.per_class), 32)
    test = decode_to_memory(list_images(test_tar), 32)

    g = torch.Generator().manual_seed(args.seed)
    per_pass = len(train.images) // args.batch_size
    batches = []
    while len(batches) < args.steps:
        order = torch.randperm(len(train.images), generator=g)
        batches += [train.images[order[i * args.batch_size:(i + 1) * args.batch_size]] for i in range(per_pass)]
    batches = batches[:args.steps]

    torch.manual_seed(args.seed)
    initial = resnet18(stem="cifar", width=0.25)
    page = ROOT / "docs" / "python.md"
    block = next(b for b in re.findall(r"```python\n(.*?)```", page.read_text(), re.S) if "model.update_target" in b)
    imports = [line for line in block.splitlines() if line.startswith(("import ", "from "))]
    loop = block[block.index("model = BYOL("):].replace('torch.save(net.state_dict(), "pretrained.pt")', "")
    code = "\n".join(imports) + "\n" + loop  # the page's stand-ins for net and data are replaced by these:
    namespace = {"net": copy.deepcopy(initial), "images": train.images, "loader": batches, "total_steps": len(batches)}
    start = time.perf_counter()
    exec(compile(code, str(page), "exec"), namespace)
    seconds = time.perf_counter() - start

    def knn(net, mean, std):
        bank = extract_features(net, train.images, mean, std, image_size=32)
        queries = extract_features(net, test.images, mean, std, image_size=32)
        return round(100 * knn_accuracy(bank, train.labels, queries, test.labels, 200, 0.1)["top1"], 2)

    augment_cfg = namespace["augment"].cfg
    row = {"benchmark": "readme-example", "steps": len(batches), "batch": args.batch_size,
           "train_images": len(train.images), "seed": args.seed, "seconds": round(seconds, 1),
           "knn_top1_untrained": knn(initial, augment_cfg.mean, augment_cfg.std),
           "knn_top1": knn(namespace["net"], augment_cfg.mean, augment_cfg.std), "torch": torch.__version__}
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
