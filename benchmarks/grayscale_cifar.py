"""A small grayscale set of real images, made from CIFAR-10: for checking what a run says on it.

Writes DIR/train/<class>/*.png (the first --per-class training images of each class) and
DIR/test/<class>/*.png (the first --test-per-class test images of each class), converted to
grayscale (ITU-R 601-2 luma, one channel), from the CIFAR-10 copy's train.tar.gz and test.tar.gz.

    python benchmarks/grayscale_cifar.py --cifar CIFAR_DIR --out data/gray-cifar --per-class 300
    byol pretrain --config cifar10 --data.path data/gray-cifar/train --data.val_path data/gray-cifar/test \\
        --model.backbone_args '{stem: cifar, width: 0.25}' --train.epochs 30 --train.out_dir runs/gray
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from PIL import Image


def main(argv=None) -> int:
    from byol.data.image_sets import decode_to_memory
    from byol.data.listing import list_images
    from byol.data.splits import first_per_class

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cifar", required=True, help="folder with CIFAR-10's train.tar.gz and test.tar.gz")
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=int, default=300)
    p.add_argument("--test-per-class", type=int, default=100)
    args = p.parse_args(argv)
    for split, n in (("train", args.per_class), ("test", args.test_per_class)):
        tar = os.path.join(args.cifar, f"{split}.tar.gz")
        if not os.path.exists(tar):
            sys.exit(f"grayscale_cifar: {tar} not found; pass --cifar DIR")
        listing = list_images(tar)
        images = decode_to_memory(first_per_class(listing, n), 32, channels=1)
        for i, (x, label) in enumerate(zip(images.images, images.labels.tolist())):
            folder = Path(args.out, split, listing.classes[label])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[0].numpy(), "L").save(folder / f"{i:05d}.png")
        print(f"wrote {len(images)} grayscale {split} images to {Path(args.out, split)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
