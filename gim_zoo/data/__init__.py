"""Data sources (gim_zoo.data.sources: built-ins, tfds/NAME, folder/PATH), their loaded
splits and the tf.data pipelines over them.

Lazy: importing gim_zoo.data (or gim_zoo.data.sources) imports no TensorFlow; the names
below load their module on first use.
"""

import importlib

_EXPORTS = {
    "DatasetNotFoundError": "gim_zoo.data.fashion_mnist",
    "load_fashion_mnist": "gim_zoo.data.fashion_mnist",
    "load_speech": "gim_zoo.data.datasets",
    "load_split": "gim_zoo.data.datasets",
    "image_pipeline": "gim_zoo.data.pipelines",
    "images_only": "gim_zoo.data.pipelines",
    "train_pipeline": "gim_zoo.data.pipelines",
    "eval_pipeline": "gim_zoo.data.pipelines",
    "CorruptImageError": "gim_zoo.data.pipelines",
    "source_from_string": "gim_zoo.data.sources",
    "SourceError": "gim_zoo.data.sources",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gim_zoo.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
