"""STL-10 through tensorflow-datasets ('unlabelled', 'train', 'test'), for users who have it.

These machines are offline, so nothing here downloads unless asked (download=True).
"""

from gim_zoo.data.fashion_mnist import DatasetNotFoundError

SPLITS = ("unlabelled", "train", "test")
FETCH_COMMAND = (
    "python -c \"import tensorflow_datasets as tfds; tfds.builder('stl10').download_and_prepare()\""
)


def load_stl10(split, data_dir=None, download=False):
    """tf.data.Dataset of (uint8 image (96, 96, 3), label int64); label -1 when unlabelled."""
    if split not in SPLITS:
        raise ValueError(f"STL-10 split must be one of {SPLITS}, got {split!r}")
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load("stl10", split=split, data_dir=data_dir, download=download,
                       as_supervised=True)
    except Exception as e:
        raise DatasetNotFoundError(
            f"STL-10 ({split}) is not prepared in tensorflow-datasets' data dir "
            f"({data_dir or '~/tensorflow_datasets'}). Fetch it (2.6 GB) with: {FETCH_COMMAND}"
        ) from e
    return ds
