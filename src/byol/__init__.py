"""byol: Bootstrap Your Own Latent (Grill et al. 2020, arXiv 2006.07733) for any PyTorch network."""
__version__ = "0.1.0"

from .model import BYOL, layer_names  # noqa: E402
from .augment import AugmentConfig, BatchAugment, TwoViewTransform, ViewConfig  # noqa: E402
from .optim import LARS  # noqa: E402

__all__ = ["BYOL", "layer_names", "AugmentConfig", "BatchAugment", "TwoViewTransform", "ViewConfig", "LARS",
           "__version__"]
