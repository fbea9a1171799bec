"""gim_zoo: Greedy InfoMax encoders for Keras 3, trained by gradient-isolated modules.

    import gim_zoo
    gim_zoo.list_models("gim-*")
    encoder = gim_zoo.load("gim-fmnist-resnet")    # pretrained, sha256-verified, offline
    images, labels = gim_zoo.data.load_fashion_mnist("test")

Importing the package is cheap: TensorFlow / Keras are imported only when something
needs them (`load`, `gim_zoo.data`, the models), so `list_models` and `info` (and
`python -m gim_zoo list / info`) start in well under a second.
"""

import importlib
import importlib.util

from gim_zoo.catalog import info
from gim_zoo.registry import list_models

__version__ = "0.1.0"
__all__ = ["__version__", "info", "list_models", "load"]


def __getattr__(name):
    if name == "load":  # gim_zoo.zoo.load itself (signature, docstring), imported on first use
        from gim_zoo.zoo import load

        return load
    # Submodules on first use (`gim_zoo.data.load_fashion_mnist(...)` after a bare
    # `import gim_zoo`), without importing them, and Keras, with the package.
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
