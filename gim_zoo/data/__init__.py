"""Datasets: Fashion-MNIST (local IDX files or tfds), STL-10 (tfds), the speech corpora, and
tf.data pipelines over them."""

from gim_zoo.data.datasets import load_speech, load_split
from gim_zoo.data.fashion_mnist import DatasetNotFoundError, load_fashion_mnist
from gim_zoo.data.pipelines import image_pipeline, images_only
from gim_zoo.data.stl10 import load_stl10

__all__ = ["DatasetNotFoundError", "image_pipeline", "images_only", "load_fashion_mnist",
           "load_speech", "load_split", "load_stl10"]
