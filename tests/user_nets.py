"""A user's own network, imported by path in the tests (`user_nets:TinyGenerator`)."""
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
