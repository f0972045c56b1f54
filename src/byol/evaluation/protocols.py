"""Evaluation of a frozen backbone: features, weighted kNN, a linear classifier on features.

kNN follows Wu et al. 2018, as lightly and solo-learn do: L2-normalised features, the
k = 200 most cosine-similar training features, votes weighted by exp(similarity / 0.1),
top-1 accuracy.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from byol.core.augment import normalize, to_float
from byol.core.model import evaluating, pool_features
from byol.data.image_sets import MemoryImages
from byol.data.listing import DataError
from byol.data.splits import balanced_split
from byol.progress import Progress

PROGRESS_SECONDS = 30.0  # at most one progress line this often while a classifier trains


@dataclass(frozen=True)
class Inputs:
    """How images are fed to a network: the normalisation it was trained with, its input side,
    the centre fraction of each evaluation image that is kept (0.875: 224 of 256), and whether
    its pixels are 8-bit or full-precision values."""
    mean: tuple
    std: tuple
    image_size: int
    crop: float = 1.0
    pixels: str = "8-bit"  # or "full": float values in the data's units (byol.core.augment.band_view)


@dataclass(frozen=True)
class ClassifierSettings:
    """How train_classifier trains: SGD with Nesterov momentum 0.9 and a cosine schedule
    (the paper's Appendix C). bn_momentum, when given, replaces the backbone's batch-norm
    momentum while fine-tuning (PyTorch convention: the weight of the new batch statistics);
    workers: DataLoader workers for a data set of whole-image crops."""
    epochs: int = 30
    lr: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 256
    fine_tune: bool = False
    bn_momentum: float | None = None
    seed: int = 0
    workers: int = 0


def evaluation_batches(images: torch.Tensor, mean, std, image_size: int | None = None, batch_size: int = 512,
                       device: str | torch.device = "cpu", channels_last: bool = False, crop: float = 1.0,
                       pixels: str = "8-bit"):
    """Images (N, C, H, W) as the network is evaluated on them, batch by batch: the centre
    `crop` of each image (0.875: 224 of 256, the ImageNet evaluation) resized to `image_size`
    where the sizes differ, normalised; no augmentation. pixels: "8-bit" (uint8, or float in
    [0, 1], kept in it) or "full" (float in the data's units, never clipped)."""
    for start in range(0, images.shape[0], batch_size):
        x = to_float(images[start:start + batch_size].to(device, non_blocking=True))
        if crop < 1.0:
            h, w = x.shape[-2:]
            ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
            x = x[..., (h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
        if image_size is not None and x.shape[-1] != image_size:
            x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", antialias=True, align_corners=False)
            x = x.clamp_(0, 1) if pixels != "full" else x
        x = normalize(x, mean, std)
        yield x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def extract_features(net: nn.Module, images: torch.Tensor, mean, std, image_size: int | None = None,
                     batch_size: int = 512, device: str | torch.device = "cpu",
                     channels_last: bool = False, keep_on_device: bool = False,
                     crop: float = 1.0, pixels: str = "8-bit") -> torch.Tensor:
    """Features of uint8 images (N, C, H, W) through `net` in eval mode, (N, D) float32, the
    images prepared by evaluation_batches. On the CPU, or left on `device` with keep_on_device
    (the kNN monitor on a GPU)."""
    out = []
    with evaluating(net):
        for x in evaluation_batches(images, mean, std, image_size, batch_size, device, channels_last, crop, pixels):
            f = pool_features(net(x)).float()
            out.append(f if keep_on_device else f.cpu())
    return torch.cat(out)


@torch.no_grad()
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                num_classes: int, k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Class scores (N_test, num_classes) by similarity-weighted votes of the k nearest neighbours."""
    bank = F.normalize(train_features.float(), dim=1)
    k = min(k, bank.shape[0])
    scores = []
    for start in range(0, test_features.shape[0], chunk):
        q = F.normalize(test_features[start:start + chunk].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=q.device, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[idx], weights)
        scores.append(votes)
    return torch.cat(scores)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    k = min(k, scores.shape[1])
    hits = (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return hits.float().mean().item()


def knn_evaluate(train_features, train_labels, test_features, test_labels, k: int = 200,
                 temperature: float = 0.1) -> tuple[dict, torch.Tensor]:
    """kNN top-1/top-5 accuracy, and whether each test image's top-1 class is right (bool, N_test)."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    scores = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    correct = scores.topk(1, dim=1).indices[:, 0] == test_labels
    return {"top1": correct.float().mean().item(), "top5": topk_accuracy(scores, test_labels, 5),
            "k": k, "temperature": temperature}, correct.cpu()


def knn_accuracy(train_features, train_labels, test_features, test_labels, k: int = 200,
                 temperature: float = 0.1) -> dict:
    return knn_evaluate(train_features, train_labels, test_features, test_labels, k, temperature)[0]


def mcnemar_exact(first_only: int, second_only: int) -> float:
    """Two-sided p-value of McNemar's exact test: the images that only the first network gets right
    against those that only the second does. Under 'no difference' each discordant image is a fair
    coin, so the smaller count is Binomial(n, 1/2) with n the discordant images (McNemar 1947;
    the exact form: Fagerland et al. 2013)."""
    n, low = first_only + second_only, min(first_only, second_only)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(low + 1))  # exact integers: no underflow at n = 10,000
    return min(1.0, 2 * tail / 2 ** n)


def _standardise(train_features, test_features):
    mean, std = train_features.mean(0), train_features.std(0) + 1e-6
    return (train_features - mean) / std, (test_features - mean) / std


def linear_probe(train_features, train_labels, test_features, test_labels, epochs: int = 100,
                 lr: float = 0.1, weight_decay: float = 0.0, batch_size: int = 256, seed: int = 0) -> dict:
    """A linear classifier on frozen, precomputed features (the fast linear evaluation).

    Features are standardised with the training set's statistics; SGD with Nesterov
    momentum 0.9 and a cosine schedule, as the paper's linear evaluation (Appendix C.1).
    """
    g = torch.Generator().manual_seed(seed)
    xtr, xte = _standardise(train_features.float(), test_features.float())
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    clf = nn.Linear(xtr.shape[1], num_classes)
    opt = torch.optim.SGD(clf.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps_per_epoch = max(1, (xtr.shape[0] + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    for _ in range(epochs):
        perm = torch.randperm(xtr.shape[0], generator=g)
        for start in range(0, xtr.shape[0], batch_size):
            idx = perm[start:start + batch_size]
            loss = F.cross_entropy(clf(xtr[idx]), train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        scores = clf(xte)
    return {"top1": topk_accuracy(scores, test_labels, 1), "top5": topk_accuracy(scores, test_labels, 5),
            "epochs": epochs, "lr": lr, "weight_decay": weight_decay}


def logistic_regression(train_features, train_labels, test_features, test_labels,
                        l2_grid=(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1), val_fraction: float = 0.2,
                        max_iter: int = 100, seed: int = 0, classes: list[str] | None = None) -> dict:
    """Multinomial logistic regression on frozen features (the "logistic regression" evaluation of `main.py --run-type eval`).

    Full-batch L-BFGS; the L2 penalty is chosen on a class-balanced validation split of
    the training features, then the model is refitted on all of them.
    """
    counts = torch.bincount(train_labels)
    present = counts[counts > 0]
    if len(present) and int(present.min()) < 2:
        label = int(((counts > 0) & (counts < 2)).nonzero()[0])
        name = repr(classes[label]) if classes and label < len(classes) else str(label)
        raise DataError(f"logistic regression chooses its L2 penalty on {val_fraction:.0%} of each class held out, so "
                        f"every class needs at least 2 training images; class {name} has 1. Add images, or evaluate "
                        "with knn or linear")
    xtr, xte = _standardise(train_features.float(), test_features.float())
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    fit_idx, val_idx = balanced_split(train_labels, val_fraction, seed)

    def fit(x, y, l2):
        torch.manual_seed(seed)
        clf = nn.Linear(x.shape[1], num_classes)
        opt = torch.optim.LBFGS(clf.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(clf(x), y) + l2 * clf.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return clf

    scores = {}
    for l2 in l2_grid:
        clf = fit(xtr[fit_idx], train_labels[fit_idx], l2)
        with torch.no_grad():
            scores[l2] = topk_accuracy(clf(xtr[val_idx]), train_labels[val_idx], 1)
    best = max(scores, key=lambda k: (scores[k], k))
    clf = fit(xtr, train_labels, best)
    with torch.no_grad():
        out = clf(xte)
    return {"top1": topk_accuracy(out, test_labels, 1), "top5": topk_accuracy(out, test_labels, 5),
            "l2": best, "validation_top1": scores, "val_fraction": val_fraction}


def crop_flip():
    """Random resized crop (0.08-1) + horizontal flip, the paper's training augmentation for
    linear evaluation and fine-tuning (Appendix C); no colour changes."""
    from byol.core.augment import ViewConfig

    return ViewConfig(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def epoch_batches(train, batch_size: int, workers: int = 0):
    """One epoch of (uint8 images, labels, cropped) in random order, full batches only (one
    short batch when there are fewer images than a batch): slices of images in memory (cropped
    False), or batches of a data set whose items are crops already (cropped True)."""
    if isinstance(train, MemoryImages):
        n = len(train)
        perm = torch.randperm(n)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            idx = perm[start:start + batch_size]
            yield train.images[idx], train.labels[idx], False
        return
    from byol.data.batch import collate

    g = torch.Generator().manual_seed(int(torch.randint(2 ** 62, ())))  # from the seeded global generator
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True, generator=g,
                                         drop_last=len(train) >= batch_size, num_workers=workers,
                                         collate_fn=collate, persistent_workers=False)
    for batch in loader:
        yield batch.images, batch.labels, True


def train_classifier(net: nn.Module, num_classes: int, train, test: MemoryImages, inputs: Inputs,
                     settings: ClassifierSettings = ClassifierSettings(), device="cpu", save_to: str | None = None,
                     metadata: dict | None = None) -> dict:
    """A linear head on `net`, trained on augmented images (crop + flip): the paper's linear
    evaluation with a frozen backbone, or fine-tuning of the whole network (settings.fine_tune),
    then scored on `test` (its centre inputs.crop, see extract_features).

    train: labeled uint8 images in memory (MemoryImages), cropped here; or a data set of crops of
    whole images (WholeImageCrops) read by settings.workers DataLoader workers, only flipped here.
    save_to: write the trained network and head as one .safetensors file (backbone.<the
    network's own keys>, head.*), with `metadata` (classes, normalisation, ...:
    byol.checkpoint.export_metadata).
    """
    from byol.core.augment import augment_view, band_view, normalize, to_float

    s, (mean, std, image_size) = settings, (inputs.mean, inputs.std, inputs.image_size)
    fine_tune, epochs = s.fine_tune, s.epochs
    torch.manual_seed(s.seed)
    net = net.to(device)
    pixels = inputs.pixels
    feature_dim = extract_features(net, test.images[:2], mean, std, image_size, device=device, pixels=pixels).shape[1]
    head = nn.Linear(feature_dim, num_classes).to(device)
    if fine_tune and s.bn_momentum is not None:
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = s.bn_momentum
    params = list(head.parameters()) + (list(net.parameters()) if fine_tune else [])
    opt = torch.optim.SGD(params, lr=s.lr, momentum=0.9, nesterov=True, weight_decay=s.weight_decay)
    steps = epochs * max(1, len(train) // s.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    view = crop_flip()
    progress, step = Progress(steps, every=PROGRESS_SECONDS), 0
    for epoch in range(epochs):
        net.train(fine_tune)
        for images, labels, cropped in epoch_batches(train, s.batch_size, s.workers):
            x = to_float(images.to(device))
            x = (band_view(x, view, image_size, mean, std) if pixels == "full" else
                 normalize(augment_view(x, view, image_size, cropped=cropped), mean, std))
            with torch.set_grad_enabled(fine_tune):
                f = pool_features(net(x))
            loss = F.cross_entropy(head(f.float()), labels.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if progress.due():  # one sync with the device, at most every PROGRESS_SECONDS
                progress.say(step, f"{'fine-tuning' if fine_tune else 'linear evaluation'}: epoch {epoch + 1}/{epochs}"
                                   f"  step {step}/{steps}  loss {loss.item():.4f}")
    test_f = extract_features(net, test.images, mean, std, image_size, device=device, crop=inputs.crop, pixels=pixels)
    with torch.no_grad():
        scores = head.cpu()(test_f)
    if save_to:
        from byol.checkpoint import export_metadata, save_safetensors

        backbone = getattr(net, "net", net)  # the user's network inside a feature_extractor
        state = {**{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
                 **{f"head.{k}": v for k, v in head.state_dict().items()}}
        save_safetensors(state, save_to, export_metadata(metadata or {}))
    record = {k: v for k, v in dataclasses.asdict(s).items() if k != "workers"}
    return {"top1": topk_accuracy(scores, test.labels, 1), "top5": topk_accuracy(scores, test.labels, 5), **record}
