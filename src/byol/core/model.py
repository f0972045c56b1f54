"""BYOL around any network: online and target networks, predictor, loss, EMA.

    model = BYOL(net, hidden_layer="avgpool", image_size=32)   # or BYOL(net, ModelSpec(...), image_size=32)
    loss = model(view1, view2)           # one call per step
    loss.backward(); optimizer.step()
    model.update_target(step, total_steps)
    features = model.embed(images)

Paper: Grill et al. 2020, "Bootstrap Your Own Latent", arXiv 2006.07733, Section 3.
"""
from __future__ import annotations

import copy
import dataclasses
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Union

import torch
from torch import nn

from byol.core.augment import check_pixels, normalize, require, to_float
from byol.core.ema import cosine_tau, ema_update
from byol.core.heads import HEAD_BIASES, MLP
from byol.core.loss import byol_loss, small_crops_loss


class HiddenLayerError(ValueError):
    """The requested hidden layer does not exist, or the network never calls it."""


class _LayerReached(Exception):
    """Raised by the capture hook to stop the forward pass once the representation exists."""


def layer_names(net: nn.Module) -> list[str]:
    """Names accepted as `hidden_layer` (every named sub-module)."""
    return [name for name, _ in net.named_modules() if name]


def resolve_hidden_layer(net: nn.Module, hidden_layer: str | int | None) -> str | None:
    """A layer name, an index into the network's direct children, or None (the output)."""
    if hidden_layer is None:
        return None
    if isinstance(hidden_layer, int):
        children = [name for name, _ in net.named_children()]
        try:
            return children[hidden_layer]
        except IndexError:
            raise HiddenLayerError(
                f"hidden_layer index {hidden_layer} is out of range: the network has "
                f"{len(children)} direct children ({', '.join(children)})"
            ) from None
    names = layer_names(net)
    if hidden_layer not in names:
        shown = ", ".join(names[:60]) + (" ..." if len(names) > 60 else "")
        raise HiddenLayerError(
            f"hidden_layer {hidden_layer!r} is not a layer of {type(net).__name__}; "
            f"layers are: {shown} (run `byol layers` to list them)"
        )
    return hidden_layer


TOKEN_POOLS = ("auto", "mean", "cls", "channels")


def resolve_token_pool(net: nn.Module, token_pool: str) -> str:
    """How a 3-D output is read. "auto": as tokens (B, N, D), pooled by their mean, when the
    network has attention (a transformer); as a 1-D feature map (B, C, L), pooled over L
    ("channels"), when it has 1-D convolutions and no attention; otherwise it stays "auto", and
    pool_features refuses a 3-D output, naming both readings. A named choice is kept."""
    if token_pool != "auto":
        return token_pool
    kinds = [type(m) for m in net.modules()]
    if any(issubclass(k, nn.MultiheadAttention) or "Attention" in k.__name__ for k in kinds):
        return "mean"
    if any(issubclass(k, nn.Conv1d) for k in kinds):
        return "channels"
    return "auto"


def pool_features(out: torch.Tensor, token_pool: str = "mean") -> torch.Tensor:
    """A representation as (B, D).

    Feature maps (B, C, H, W) are global-average-pooled to (B, C): byol-pytorch flattens them;
    pooling keeps D = C whatever the image size, which also makes hidden layers of
    image-to-image networks usable (as in DL-Art-School). A 3-D output is read as token_pool
    says (resolve_token_pool): a transformer's tokens (B, N, D) pooled over the tokens, never over
    the features, by their mean ("mean") or the first token ("cls", a ViT's class token, as
    torchvision's ViT classifies); a 1-D feature map (B, C, L) pooled over L ("channels").
    """
    if out.dim() == 3:
        if token_pool == "auto":
            b, n, d = out.shape
            raise HiddenLayerError(
                f"the features are 3-D {tuple(out.shape)} and the network shows no sign of which reading is meant: "
                f"(batch, tokens {n}, features {d}) gives {d} features (model.token_pool mean or cls), (batch, "
                f"channels {n}, length {d}) gives {n} (model.token_pool channels); set model.token_pool")
        if token_pool == "channels":
            return out.mean(dim=2)
        return out[:, 0] if token_pool == "cls" else out.mean(dim=1)
    if out.dim() > 3:
        out = out.flatten(2).mean(dim=2)
    return out


class Encoder(nn.Module):
    """Backbone (the user's network, untouched) and projector: f then g in the paper."""

    def __init__(self, net: nn.Module, hidden_layer: str | None, projector: nn.Module, token_pool: str = "auto"):
        super().__init__()
        if token_pool not in TOKEN_POOLS:
            raise ValueError(f"token_pool must be one of {', '.join(TOKEN_POOLS)}, got {token_pool!r}")
        self.net = net
        self.projector = projector
        self.hidden_layer = hidden_layer
        self.token_pool = resolve_token_pool(net, token_pool)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """y = f(x): the output of `hidden_layer` (or of the network), pooled to (B, D) (pool_features).

        The capture hook is registered for this call only and keeps the tensor in a local,
        so replicas under DataParallel never share it (byol-pytorch issues #9, #50, #58).
        It stops the forward pass at the layer: later layers are neither run nor trained.
        """
        if self.hidden_layer is None:
            return pool_features(self.net(x), self.token_pool)
        captured: list[torch.Tensor] = []
        layer = self.net.get_submodule(self.hidden_layer)
        caller = threading.get_ident()

        def hook(module, _inputs, output):
            # replicas share hook tables: act only for this call's layer, in this thread
            if module is layer and threading.get_ident() == caller and not captured:
                captured.append(output)
                raise _LayerReached

        handle = layer.register_forward_hook(hook)
        try:
            self.net(x)
        except _LayerReached:
            pass
        finally:
            handle.remove()
        if not captured:
            raise HiddenLayerError(f"hidden_layer {self.hidden_layer!r} was never called in the forward pass")
        out = captured[0]
        if isinstance(out, (tuple, list)):
            out = out[0]
        return pool_features(out, self.token_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.representation(x))


def feature_maps(net: nn.Module, layers: list[str | int], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs of the named layers of `net` for `x` as they are, not pooled ((B, C, H, W)
    maps for a detection or segmentation head, a transformer's tokens), by layer name; the
    forward pass stops once the last of them has run."""
    names = [resolve_hidden_layer(net, layer) for layer in layers]
    if None in names:
        raise HiddenLayerError("feature_maps needs layer names (or child indices), not None")
    captured: dict[str, torch.Tensor] = {}

    def capture(name: str):
        def hook(_module, _inputs, output):
            captured.setdefault(name, output[0] if isinstance(output, (tuple, list)) else output)
            if len(captured) == len(set(names)):
                raise _LayerReached

        return hook

    handles = [net.get_submodule(name).register_forward_hook(capture(name)) for name in dict.fromkeys(names)]
    try:
        net(x)
    except _LayerReached:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in names if name not in captured]
    if missing:
        raise HiddenLayerError(f"layer {missing[0]!r} was never called in the forward pass")
    return {name: captured[name] for name in names}


def feature_extractor(net: nn.Module, hidden_layer: str | int | None = None, token_pool: str = "auto") -> nn.Module:
    """`net` up to its representation (the hidden layer's output, pooled), as a module."""
    return Encoder(net, resolve_hidden_layer(net, hidden_layer), nn.Identity(), token_pool)


@contextmanager
def evaluating(net: nn.Module):
    """`net` in eval mode inside the block, and back in the mode it was in after it."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


@contextmanager
def frozen_running_stats(net: nn.Module):
    """Batch norms of `net` normalise with batch statistics as usual inside the block, but
    leave their running statistics unchanged (momentum 0)."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    kept = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield net
    finally:
        for m, momentum in zip(norms, kept):
            m.momentum = momentum


@torch.no_grad()
def infer_feature_dim(net: nn.Module, hidden_layer: str | None, image_size: int, in_channels: int,
                      token_pool: str = "auto") -> int:
    """Size of the representation, from one forward pass of two images in eval mode."""
    with evaluating(net):
        param = next(net.parameters(), None)
        device = param.device if param is not None else "cpu"
        probe = torch.zeros(2, in_channels, image_size, image_size, device=device)
        try:
            return int(feature_extractor(net, hidden_layer, token_pool).representation(probe).shape[1])
        except (RuntimeError, ValueError, TypeError) as e:  # a network for other channels or sizes
            if isinstance(e, HiddenLayerError):
                raise
            raise HiddenLayerError(f"{type(net).__name__} cannot take images of shape (2, {in_channels}, {image_size}, "
                                   f"{image_size}) ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]}); "
                                   "give the channels (data.channels) and image size (data.image_size) it takes, "
                                   "or a network that takes these") from None


def check_sides(model: BYOL, sides: list[int], in_channels: int) -> None:
    """The network must give features of one size at every side it is trained on besides the
    one it was built for (a global pooling does; a flatten after fixed-size convolutions does
    not): a ValueError naming the side."""
    encoder = model.online
    for side in sides:
        try:
            dim = infer_feature_dim(encoder.net, encoder.hidden_layer, side, in_channels, encoder.token_pool)
        except Exception as e:  # noqa: BLE001 - any failure of the probe forward is reported the same way
            raise ValueError(f"the network fails on {side} x {side} views: "
                             f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        if dim != model.feature_dim:
            raise ValueError(f"the network's features are {dim}-d on {side} x {side} views but {model.feature_dim}-d "
                             "at the side it was built for; views of several sides need a network whose features do not "
                             "depend on the input size (a global pooling)")


def projection_std(z: torch.Tensor) -> torch.Tensor:
    """Collapse monitor: mean over dimensions of the batch std of L2-normalised projections.

    About 1/sqrt(d) while the projections spread over the sphere; 0 when they collapse to
    one point. A tensor on the device: reading it is the only synchronisation.
    """
    return torch.nn.functional.normalize(z.float(), dim=1).std(dim=0).mean()


@dataclass(frozen=True)
class ModelSpec:
    """What BYOL puts around a network and how its target moves: the paper's Section 3.3 unless
    a field says otherwise. The `model` section of the configuration is this spec plus the
    network's name and weights; each field's docstring is its help text (`byol pretrain --help`)."""

    hidden_layer: Union[int, str, None] = None
    """a layer name, an index into the children (-2), or None: the output"""
    projection_dim: int = 256
    """output of projector and predictor (paper: 256)"""
    projection_hidden_dim: int = 4096
    """projector hidden layer (paper: 4096)"""
    prediction_hidden_dim: int = 4096
    """predictor hidden layer (paper: 4096)"""
    tau_base: float = 0.996
    """EMA rate at the first step (paper, Section 3.3)"""
    tau_final: float = 1.0
    """... at the last, on a cosine; = tau_base keeps it constant"""
    concat_views: bool = False
    """both views through each network as one batch of 2B (mixes their BN statistics)"""
    head_batchnorm: bool = True
    """BatchNorm1d in projector and predictor (paper, Section 3.3)"""
    head_bias: Literal[HEAD_BIASES] = "hidden"
    """hidden: bias on each head's first Linear only (DeepMind's) | output: on the last only (lightly's) | both (solo-learn's)"""
    token_pool: Literal[TOKEN_POOLS] = "auto"
    """a 3-D output -> (B, D): auto: tokens' mean for a network with attention, over the length for one with 1-D convolutions, else refused | mean: tokens (B, N, D), their mean | cls: the first token | channels: a 1-D map (B, C, L), mean over L"""

    def __post_init__(self):
        for name in ("projection_dim", "projection_hidden_dim", "prediction_hidden_dim"):
            require(getattr(self, name) > 0, name, getattr(self, name), "must be > 0")
        require(0.0 <= self.tau_base <= 1.0, "tau_base", self.tau_base, "must be in [0, 1]")
        require(self.tau_base <= self.tau_final <= 1.0, "tau_final", self.tau_final, "must be in [tau_base, 1]")
        require(self.head_bias in HEAD_BIASES, "head_bias", self.head_bias, f"must be one of {', '.join(HEAD_BIASES)}")
        require(self.token_pool in TOKEN_POOLS, "token_pool", self.token_pool, f"must be one of {', '.join(TOKEN_POOLS)}")


class BYOL(nn.Module):
    """Bootstrap Your Own Latent around `net`.

    Arguments:

    - `net`: any nn.Module taking images (B, C, H, W).
    - `spec`: the heads, where the representation is taken and the target's EMA (ModelSpec);
      the paper's by default. Its fields may be given as keywords instead
      (`BYOL(net, hidden_layer="avgpool", image_size=32)`): they replace the spec's.
    - `image_size`, `in_channels`: shape of one probe forward that measures the representation
      size; pass `feature_dim` to skip it.

    The spec's fields:

    - `hidden_layer`: a layer name (see `layer_names`), an index into `net`'s direct children
      (-2 is usually the pooling before the classifier), or None for the network's output;
    - `projection_dim`, `projection_hidden_dim`, `prediction_hidden_dim`: the MLP sizes, 256,
      4096, 4096 in the paper;
    - `tau_base`: the EMA rate at step 0, 0.996 in the paper, going to `tau_final` (the paper:
      1) on a cosine;
    - `concat_views`: both views through each network as one batch of 2B images (faster on
      some hardware, but batch-norm statistics then mix the views; the paper's setting is one
      batch per view);
    - `head_batchnorm`, `head_bias`: the heads' shape (see `MLP`);
    - `token_pool`: how a 3-D output becomes (B, D) (see `resolve_token_pool` and
      `pool_features`).

    The target network is a deep copy of backbone+projector: its own tensors, no
    gradients, updated only by `update_target`. It runs in training mode (batch statistics,
    as the paper's code); its batch-norm momentum is 0 so that its running statistics
    change only by the same EMA that moves its weights (they follow the online ones).
    """

    def __init__(self, net: nn.Module, spec: ModelSpec | None = None, image_size: int = 224, in_channels: int = 3,
                 feature_dim: int | None = None, **settings):
        super().__init__()
        spec = dataclasses.replace(spec or ModelSpec(), **settings) if settings else spec or ModelSpec()
        self.spec = spec
        layer = resolve_hidden_layer(net, spec.hidden_layer)
        if feature_dim is None:
            feature_dim = infer_feature_dim(net, layer, image_size, in_channels, spec.token_pool)
        self.feature_dim = feature_dim
        self.tau_base, self.tau_final = spec.tau_base, spec.tau_final
        self.tau = spec.tau_base
        self.concat_views = spec.concat_views
        heads = {"batch_norm": spec.head_batchnorm, "bias": spec.head_bias}
        self.online = Encoder(net, layer, MLP(feature_dim, spec.projection_hidden_dim, spec.projection_dim, **heads),
                              spec.token_pool)
        self.predictor = MLP(spec.projection_dim, spec.prediction_hidden_dim, spec.projection_dim, **heads)
        self.target = copy.deepcopy(self.online)
        self.target.requires_grad_(False)
        for m in self.target.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.0  # running stats move by the EMA only

    @property
    def backbone(self) -> nn.Module:
        """The user's network, online copy: what to export after pretraining."""
        return self.online.net

    def trainable_modules(self) -> nn.ModuleList:
        """What the optimiser updates: the online network (backbone + projector) and the
        predictor. The target is moved by `update_target` only."""
        return nn.ModuleList([self.online, self.predictor])

    def train(self, mode: bool = True):
        super().train(mode)
        self.target.train(True)  # the target always uses batch statistics, as the online net
        return self

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """The symmetric BYOL loss of two augmented views of the same images."""
        return self.step(view1, view2)[0]

    def step(self, view1: torch.Tensor, view2: torch.Tensor,
             small: list[torch.Tensor] | tuple = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the loss, what to log): the loss as `forward`, and the collapse monitor
        (`projection_std` of the target's view-1 projections), a tensor on the device.

        small: multi-crop's small views, through the online network only (a batch per crop,
        with its own batch statistics), each regressed onto both full views' targets
        (`small_crops_loss`). They leave the running BN statistics alone: those, which
        evaluation uses, stay the full views'."""
        q1, q2 = self._online_predictions(view1, view2)
        with torch.no_grad():
            z1, z2 = self._two_views(self.target, view1, view2)
        loss = byol_loss(q1, q2, z1, z2)
        if len(small):  # multi-crop only: the plain step does no extra work
            with frozen_running_stats(self.online):
                q_small = [self.predictor(self.online(v)) for v in small]
            loss = loss + small_crops_loss(q_small, z1, z2)
        return loss, {"projection_std": projection_std(z1)}

    def _online_predictions(self, view1, view2):
        if self.concat_views:
            return self.predictor(self.online(torch.cat([view1, view2]))).chunk(2)
        return self.predictor(self.online(view1)), self.predictor(self.online(view2))

    def _two_views(self, network: nn.Module, view1, view2):
        if self.concat_views:
            return network(torch.cat([view1, view2])).chunk(2)
        return network(view1), network(view2)

    @torch.no_grad()
    def update_target(self, step: int, total_steps: int) -> float:
        """EMA step after the optimizer step; tau from the cosine schedule at `step`."""
        self.tau = cosine_tau(step, total_steps, self.tau_base, self.tau_final)
        ema_update(self.target, self.online, self.tau)
        return self.tau

    @torch.no_grad()
    def embed(self, images: torch.Tensor, mean=None, std=None, pixels: str = "8-bit") -> torch.Tensor:
        """Representation y of the online backbone, in eval mode (running BN statistics).

        With `mean` and `std` (the views' normalisation, e.g. AugmentConfig's), images are pixels,
        as BYOLModule and fit take them: uint8 (0-255) or float in [0, 1] (check_pixels), scaled
        and normalised here; with pixels "full", float values in the data's own units,
        standardised here. Without them, float images go in as they are, normalised as the
        training views were (what forward takes), and any other dtype is refused."""
        if mean is not None and std is not None:
            if pixels != "full":
                check_pixels(images)
            images = normalize(to_float(images), mean, std)
        elif not images.is_floating_point():
            raise TypeError(f"embed() got {images.dtype} images: pass mean= and std= (the normalisation of the "
                            "training views, e.g. AugmentConfig().mean and .std) to have pixels scaled and "
                            "normalised, or float images normalised that way")
        with evaluating(self.online):
            return self.online.representation(images)


@torch.no_grad()
def describe_layers(net: nn.Module, image_size: int = 32, in_channels: int = 3) -> list[tuple[str, str, str]]:
    """(name, type, output shape) of every layer for one probe image: to pick `hidden_layer`."""
    shapes: dict[str, str] = {}
    handles = []
    for name, module in net.named_modules():
        if name:
            def hook(_m, _i, out, name=name):
                t = out[0] if isinstance(out, (tuple, list)) else out
                shapes.setdefault(name, str(tuple(t.shape)) if torch.is_tensor(t) else type(t).__name__)
            handles.append(module.register_forward_hook(hook))
    try:
        with evaluating(net):
            net(torch.zeros(1, in_channels, image_size, image_size))
    except (RuntimeError, ValueError) as e:  # a probe of the wrong channels or too small for the network
        raise HiddenLayerError(f"{type(net).__name__} cannot take a probe image of shape (1, {in_channels}, "
                               f"{image_size}, {image_size}) ({str(e).splitlines()[0]}); give the channels and "
                               "image size it takes") from None
    finally:
        for h in handles:
            h.remove()
    return [(n, type(m).__name__, shapes.get(n, "not called")) for n, m in net.named_modules() if n]
