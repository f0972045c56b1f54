"""One training batch, whatever the source: every data set yields a `Batch` (one sample, or a
whole batch from `__getitems__`), and `collate` stacks samples into one. Its layout says how
the two views are made:

    images              uint8 images, augmented into both views on the training device
    images + partners   uint8 pairs: view 1 from images, view 2 from partners (similar video
                        frames; or each view's crop of a whole image, large_images: full)
    images + boxes      uint8 whole photos, each decoded at the scale its crops need, padded to
                        one canvas (its own height and width in extents), and each view's box
                        (B, 2, 4): the training device cuts and resizes both views (data.crop_on)
    view1 + view2       views already augmented in the DataLoader workers (floats)
    indices             positions in the uint8 images kept on the training device

labels: class indices, -1 where unlabeled (absent with indices).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Batch:
    images: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    partners: torch.Tensor | None = None
    view1: torch.Tensor | None = None
    view2: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    boxes: torch.Tensor | None = None  # (B, 2, 4): view 1's and view 2's (x0, y0, w, h) in each image's pixels
    extents: torch.Tensor | None = None  # (B, 2): each image's (height, width) on the padded canvas

    def __post_init__(self):
        layouts = (self.images is not None, self.view1 is not None, self.indices is not None)
        if sum(layouts) != 1 or (self.view1 is None) != (self.view2 is None) or \
                (self.partners is not None and self.images is None) or \
                (self.boxes is not None and (self.images is None or self.partners is not None)):
            raise ValueError("a Batch holds images (with partners, with boxes, or alone), view1 and view2, "
                             "or indices")

    def _map(self, fn) -> Batch:
        return Batch(**{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                        for f in fields(self)})

    def to(self, device, non_blocking: bool = False) -> Batch:
        """On `device` (Lightning moves batches with this)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """In page-locked memory (DataLoader's pin_memory calls this)."""
        return self._map(lambda t: t.pin_memory())

    def __len__(self) -> int:
        first = next(t for t in (self.images, self.view1, self.indices) if t is not None)
        return first.shape[0]


def collate(samples: list[Batch]) -> Batch:
    """Samples (one image or pair each) stacked into one Batch; labels become a tensor. Whole
    photos with boxes (of many sizes) are padded into one canvas, their sizes in extents."""
    first = samples[0]
    if first.boxes is not None:
        return Batch(images=padded([s.images for s in samples]), boxes=torch.stack([s.boxes for s in samples]),
                     extents=torch.tensor([list(s.images.shape[-2:]) for s in samples]),
                     labels=torch.as_tensor([int(s.labels) for s in samples]))
    out = {}
    for f in fields(first):
        values = [getattr(s, f.name) for s in samples]
        if values[0] is None:
            continue
        out[f.name] = torch.stack(values) if isinstance(values[0], torch.Tensor) and values[0].dim() > 0 \
            else torch.as_tensor([int(v) for v in values])
    return Batch(**out)


def padded(images: list[torch.Tensor]) -> torch.Tensor:
    """Images (C, h, w) of many sizes on one canvas (B, C, max h, max w), each at the top left,
    channels last in memory (as decoders give pixels); the rest of the canvas is left as it was
    allocated (core.augment.crop_resize never reads past an image's own size). The
    host-to-device copy carries max h x max w pixels per image."""
    height, width = max(x.shape[-2] for x in images), max(x.shape[-1] for x in images)
    canvas = images[0].new_empty((len(images), height, width, images[0].shape[0]))
    for i, x in enumerate(images):
        canvas[i, :x.shape[-2], :x.shape[-1]] = x.permute(1, 2, 0)
    return canvas.permute(0, 3, 1, 2)


def as_batch(batch) -> Batch:
    """What a plain DataLoader yields, as a Batch: a Batch as it is; an image tensor (B, C, H, W),
    uint8 or float in [0, 1]; or a tuple/list whose first item is that tensor and whose second,
    if any, holds the labels (TensorDataset, torchvision-style data sets)."""
    if isinstance(batch, Batch):
        return batch
    if isinstance(batch, torch.Tensor):
        return Batch(images=batch)
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        labels = batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None
        return Batch(images=batch[0], labels=labels)
    raise TypeError(f"a training batch must be a byol Batch, an image tensor (B, C, H, W) or (images, labels); "
                    f"got {type(batch).__name__}")


def already_batched(batch: Batch) -> Batch:
    """Collate for data sets whose `__getitems__` returns the whole Batch (in-memory images)."""
    return batch
