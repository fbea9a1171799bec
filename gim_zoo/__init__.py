"""gim_zoo: Greedy InfoMax encoders for Keras 3, trained by gradient-isolated modules.

    import gim_zoo
    gim_zoo.list_models("gim-*")
    encoder = gim_zoo.load("gim-fmnist-resnet")    # pretrained, sha256-verified, offline
"""

from gim_zoo.registry import list_models
from gim_zoo.zoo import info, load

__version__ = "0.1.0"
__all__ = ["__version__", "info", "list_models", "load"]
