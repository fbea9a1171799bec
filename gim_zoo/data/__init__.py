"""Datasets as tf.data pipelines: Fashion-MNIST (local IDX files or tfds) and STL-10 (tfds)."""

from gim_zoo.data.fashion_mnist import DatasetNotFoundError, load_fashion_mnist
from gim_zoo.data.pipelines import image_pipeline, images_only
from gim_zoo.data.stl10 import load_stl10

__all__ = ["DatasetNotFoundError", "image_pipeline", "images_only", "load_fashion_mnist",
           "load_stl10"]
