"""Fashion-MNIST IDX reading, missing/corrupt data errors, and the augmentation pipeline."""

import gzip
import struct

import numpy as np
import pytest

from gim_zoo.data import DatasetNotFoundError, image_pipeline, load_fashion_mnist
from gim_zoo.data.fashion_mnist import FILES, read_idx


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fmnist(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 10)):
        images_file, labels_file = FILES[split]
        write_idx(tmp_path / images_file, rng.integers(0, 256, size=(n, 28, 28)))
        write_idx(tmp_path / labels_file, np.arange(n) % 10)
    return tmp_path


def test_reads_idx_directory(fake_fmnist):
    images, labels = load_fashion_mnist("train", fake_fmnist)
    assert images.shape == (20, 28, 28, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.arange(20) % 10)


def test_env_var_directory(fake_fmnist, monkeypatch):
    monkeypatch.setenv("GIM_ZOO_FASHION_MNIST_DIR", str(fake_fmnist))
    monkeypatch.setattr("gim_zoo.data.fashion_mnist.DEFAULT_DIR", "/nonexistent")
    assert load_fashion_mnist("test")[0].shape == (10, 28, 28, 1)


def test_truncated_file_is_refused_by_name(fake_fmnist):
    path = fake_fmnist / FILES["train"][0]
    data = gzip.decompress(path.read_bytes())
    with gzip.open(path, "wb") as f:
        f.write(data[:-100])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        read_idx(path)


def test_missing_explicit_directory_names_the_install_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)


def test_unknown_split():
    with pytest.raises(ValueError, match="split must be one of"):
        load_fashion_mnist("validation")


def test_training_pipeline_augments_eval_pipeline_does_not():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 28, 28, 1)).astype(np.uint8)
    labels = np.arange(8)
    (x_eval, y_eval), = image_pipeline(images, labels, batch_size=8).as_numpy_iterator()
    np.testing.assert_array_equal(x_eval, images.astype(np.float32))
    np.testing.assert_array_equal(y_eval, labels)
    train = image_pipeline(images, labels, training=True, batch_size=8, seed=1)
    (x1, y1), = train.as_numpy_iterator()
    assert x1.shape == (8, 28, 28, 1) and x1.dtype == np.float32
    order = np.argsort(y1)
    assert not np.array_equal(x1[order], images.astype(np.float32))  # shifted / flipped
    (x1_again, _), = image_pipeline(images, labels, training=True, batch_size=8,
                                   seed=1).as_numpy_iterator()
    np.testing.assert_array_equal(x1, x1_again)  # the seed fixes augmentation


def test_stl10_without_data_names_the_fetch_command(tmp_path):
    from gim_zoo.data.sources import STL10

    with pytest.raises(DatasetNotFoundError, match="download_and_prepare"):
        STL10.load("pretrain", data_dir=str(tmp_path))
