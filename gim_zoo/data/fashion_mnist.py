"""Fashion-MNIST from the four IDX .gz files (Debian's dataset-fashion-mnist, or tfds).

Directory order: explicit argument, $GIM_ZOO_FASHION_MNIST_DIR, then Debian's path.
If none holds the files, an already-prepared tfds copy is used; tfds downloads only when
asked to (download=True), so the default path never touches the network.
"""

import gzip
import os
from pathlib import Path

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "GIM_ZOO_FASHION_MNIST_DIR"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)
INSTALL_HINT = (
    "Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files land "
    f"in {DEFAULT_DIR}), or point --data_dir / ${ENV_VAR} at a folder holding "
    + ", ".join(f for pair in FILES.values() for f in pair)
    + ", or, online, fetch it with "
    "`python -c \"import tensorflow_datasets as tfds; tfds.load('fashion_mnist')\"`."
)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not on this machine; the message says how to get it."""


def read_idx(path):
    """Parse one (gzipped) IDX file into a uint8 array, refusing truncated files."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable IDX file ({e}); re-install it. "
                         + INSTALL_HINT) from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} does not start with an unsigned-byte IDX header")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise ValueError(
            f"{path} is truncated or corrupted: header promises {expected} values of shape "
            f"{dims}, file holds {len(data) - offset}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def find_data_dir(data_dir=None):
    """The explicit directory (which must hold the files), else $ENV_VAR, else Debian's."""
    def complete(d):
        return d and all((Path(d) / f).is_file() for pair in FILES.values() for f in pair)

    if data_dir:
        if not complete(data_dir):
            raise DatasetNotFoundError(
                f"Fashion-MNIST files not found in {data_dir}. " + INSTALL_HINT)
        return Path(data_dir)
    for candidate in (os.environ.get(ENV_VAR), DEFAULT_DIR):
        if complete(candidate):
            return Path(candidate)
    return None


def load_fashion_mnist(split, data_dir=None, download=False):
    """(images uint8 (N, 28, 28, 1), labels int64 (N,)) for split 'train' or 'test'."""
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    directory = find_data_dir(data_dir)
    if directory is not None:
        images_file, labels_file = FILES[split]
        images = read_idx(directory / images_file)
        labels = read_idx(directory / labels_file).astype(np.int64)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels")
        return images[..., None], labels
    return _load_from_tfds(split, download)


def _load_from_tfds(split, download):
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load("fashion_mnist", split=split, batch_size=-1, download=download)
    except Exception as e:  # tfds raises several types for "not prepared"
        raise DatasetNotFoundError("Fashion-MNIST is not on this machine. " + INSTALL_HINT) from e
    data = tfds.as_numpy(ds)
    return data["image"].astype(np.uint8), data["label"].astype(np.int64)
