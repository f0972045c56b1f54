"""byol: Bootstrap Your Own Latent (Grill et al. 2020, arXiv 2006.07733) for any PyTorch network.

Where to start reading (docs/design.md, "How the code is laid out"):
    byol.core        the method in plain PyTorch: model, heads, loss, EMA, augmentations, optimiser
    byol.data        image folders and archives, named data sets, shards, loaders
    byol.checkpoint  atomic writes, checkpoints, export with metadata
    byol.config      the configuration schema, recipes, --help text
    byol.tracking    MLflow URIs, checked before any work
    byol.evaluation  kNN, linear, logistic, fine-tuning, embeddings, the report and the preview
    byol.training    the LightningModule, its callbacks, and pretrain()
    byol.cli         the `byol` command line
"""
from byol.core.augment import AugmentConfig, BatchAugment, TwoViewTransform, ViewConfig
from byol.core.ema import cosine_tau, ema_update
from byol.core.heads import MLP
from byol.core.loss import byol_loss
from byol.core.model import BYOL, ModelSpec, layer_names
from byol.core.optim import LARS, build_optimizer, build_scheduler
from byol.version import __version__

__all__ = ["BYOL", "ModelSpec", "layer_names", "MLP", "byol_loss", "cosine_tau", "ema_update", "AugmentConfig", "BatchAugment",
           "TwoViewTransform", "ViewConfig", "LARS", "build_optimizer", "build_scheduler", "pretrain", "export",
           "evaluate", "embed", "__version__"]


def __getattr__(name: str):
    """The whole-run functions, imported when first used (the core alone needs no Lightning):
    byol.pretrain(config), byol.export(checkpoint, out), byol.evaluate(checkpoint, protocol, ...),
    byol.embed(checkpoint, data); each does what the `byol` command of the same name does."""
    if name == "pretrain":
        from byol.training.pretrain import pretrain

        return pretrain
    if name == "export":
        from byol.evaluation.deploy import export

        return export
    if name in ("evaluate", "embed"):
        from byol.evaluation import saved

        return getattr(saved, name)
    raise AttributeError(f"module 'byol' has no attribute {name!r}")
