"""A user's own network, imported by path in the tests (`user_nets:TinyGenerator`)."""
import torch
from torch import nn


class TinyGenerator(nn.Module):
    """An image-to-image network (DLAS style): features are taken from a named hidden layer."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU())
        self.tail = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x):
        return self.tail(self.body(self.head(x))) + x


class NoBatchNorm(nn.Module):
    """A small conv net without batch norm: its output does not depend on how a batch is split."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.features(x)


class NaNFeatures(nn.Module):
    """Features that turn NaN on chosen forward calls (call 1 is BYOL's probe at construction,
    then the online network runs twice per training step): `nan_calls` or every call after `nan_after`."""

    def __init__(self, nan_calls=(), nan_after=None):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.calls, self.nan_calls, self.nan_after = 0, set(nan_calls), nan_after

    def forward(self, x):
        self.calls += 1
        y = self.conv(x).mean(dim=(2, 3))
        bad = self.calls in self.nan_calls or (self.nan_after is not None and self.calls > self.nan_after)
        return y * float("nan") if bad else y


class DivergingStatistics(nn.Module):
    """Finite features, but a buffer (as a batch-norm running variance would) that overflows to
    inf after `inf_after` training forward calls: the loss still looks fine, the weights do not."""

    def __init__(self, inf_after: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.register_buffer("running_var", torch.ones(8))
        self.calls, self.inf_after = 0, inf_after

    def forward(self, x):
        self.calls += 1
        if self.training and self.calls > self.inf_after:
            self.running_var.fill_(float("inf"))
        return self.conv(x).mean(dim=(2, 3))


class TinyViT(nn.Module):
    """A small vision transformer: patches -> tokens (B, 1 + N, D) with a class token first,
    encoder layers, a final LayerNorm `ln` (torchvision's ViT names it encoder.ln)."""

    def __init__(self, dim: int = 24, patch: int = 8, image_size: int = 32, depth: int = 1):
        super().__init__()
        self.patches = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + (image_size // patch) ** 2, dim) * 0.02)
        self.encoder = nn.Sequential(*(nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, batch_first=True)
                                       for _ in range(depth)))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.pos
        return self.head(self.ln(self.encoder(tokens))[:, 0])


def make_tiny():
    """A factory function of the user's own, not an nn.Module class."""
    return NoBatchNorm()
