"""Loaded splits of image sources: in memory (ArraySplit) or streamed (FolderSplit,
TfdsSplit). The pipelines (gim_zoo.data.pipelines) turn any of them into batches.

Every split has `count`, `labelled`, `labels` (int64 array, or None when it has none),
`first(n)` and `subset(indices)`. A streamed split also says how to read one example: `items()` (a
tensor of file paths, for random access) or `examples()` (a dataset of encoded images in
a fixed order), and `decode(item)` (uint8 image, its own size and channels).
"""

import difflib
import functools

import numpy as np

from gim_zoo.data.fashion_mnist import DatasetNotFoundError
from gim_zoo.data.folder import read_layout
from gim_zoo.data.sources import HOLDOUT_SEED, SourceError


class ArraySplit:
    """uint8 images (N, H, W, C) and labels in memory (the built-in Fashion-MNIST)."""
    decodes = False

    def __init__(self, images, labels=None):
        self.images = np.asarray(images)
        self.labels = None if labels is None else np.asarray(labels)
        self.count = len(self.images)
        self.num_classes = 0 if self.labels is None or not self.count else int(
            self.labels.max()) + 1

    @property
    def labelled(self):
        return self.labels is not None

    def first(self, n):
        return ArraySplit(self.images[:n], None if self.labels is None else self.labels[:n])

    def subset(self, indices):
        return ArraySplit(self.images[indices],
                          None if self.labels is None else self.labels[indices])


class FolderSplit:
    """Image files of a folder source, in the folder's fixed order; `paths[i]` names
    example i (error messages)."""
    decodes = True
    random_access = True

    def __init__(self, paths, labels, class_names=()):
        self.paths = list(paths)
        self.labels = labels
        self.class_names = tuple(class_names)
        self.count = len(self.paths)
        self.num_classes = len(self.class_names)

    @classmethod
    def open(cls, source, role, max_examples=0):
        from gim_zoo.data.folder import ImageFileError

        try:
            files, labels, names = read_layout(source.path, source.test_fraction, HOLDOUT_SEED)[
                role]
        except ImageFileError as e:
            raise SourceError(f"--dataset={source.name}: {e}") from None
        split = cls(files, labels, names)
        return split.first(max_examples) if max_examples else split

    @property
    def labelled(self):
        return self.labels is not None

    def first(self, n):
        return FolderSplit(self.paths[:n], None if self.labels is None else self.labels[:n],
                           self.class_names)

    def subset(self, indices):
        return FolderSplit([self.paths[i] for i in indices],
                           None if self.labels is None else self.labels[indices],
                           self.class_names)

    def items(self):
        import tensorflow as tf

        return tf.constant(self.paths or [""], tf.string)[: self.count]

    @staticmethod
    def decode(path):
        import tensorflow as tf

        return tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)

    def name_of(self, item):
        return item  # the path


class TfdsSplit:
    """A tensorflow-datasets split, images left encoded until the pipeline decodes them
    (tfds' SkipDecoding), read in tfds' fixed order (no file shuffling)."""
    decodes = True
    random_access = False

    def __init__(self, dataset, count, has_labels, description, num_classes=0, encoded=True):
        self._dataset = dataset  # (encoded image, label) pairs
        self.count = count
        self.has_labels = has_labels
        self.description = description
        self.num_classes = num_classes
        self.encoded = encoded

    def _like(self, dataset, count):
        return TfdsSplit(dataset, count, self.has_labels, self.description, self.num_classes,
                         self.encoded)

    @classmethod
    def open(cls, source, role, data_dir=None, max_examples=0):
        builder = _builder(source, data_dir)
        features = builder.info.features
        if "image" not in features:
            raise SourceError(
                f"--dataset={source.name}: its examples have no 'image' feature (they have: "
                f"{', '.join(sorted(features))}), so it is no image dataset for gim_zoo")
        import tensorflow_datasets as tfds

        label = features["label"] if "label" in features else None
        has_labels = isinstance(label, tfds.features.ClassLabel)
        encoded = isinstance(features["image"], tfds.features.Image)
        split = _split_name(source, role, builder)
        if max_examples:
            split = f"{split}[:{int(max_examples)}]"
        try:
            ds = builder.as_dataset(
                split=split, shuffle_files=False,
                decoders={"image": tfds.decode.SkipDecoding()} if encoded else None)
        except (ValueError, KeyError) as e:
            raise SourceError(f"--dataset={source.name}: no split {split!r} ({e})") from None
        except Exception as e:  # tfds raises several types for "not prepared"
            raise DatasetNotFoundError(
                f"{source.title} ({split}) is not prepared in tensorflow-datasets' data dir "
                f"({data_dir or '~/tensorflow_datasets'}); these machines never download "
                f"unasked. Fetch it with: {source.fetch_command()}") from e
        import tensorflow as tf

        def pair(example):
            y = example["label"] if has_labels else tf.constant(-1, tf.int64)
            return example["image"], tf.cast(y, tf.int64)

        ds = ds.map(pair)
        count = int(ds.cardinality())
        if count < 0:  # unknown: count it (reads the records, decodes nothing)
            count = int(ds.reduce(np.int64(0), lambda n, _: n + 1))
        if count == 0:
            raise SourceError(f"--dataset={source.name}: split {split!r} is empty")
        return cls(ds, count, has_labels, f"{source.name} split {split}",
                   label.num_classes if has_labels else 0, encoded)

    def decode(self, item):
        import tensorflow as tf

        if self.encoded:
            return tf.io.decode_image(item, channels=0, expand_animations=False)
        return tf.cast(item, tf.uint8)

    def examples(self):
        return self._dataset

    @property
    def labelled(self):
        return self.has_labels

    @functools.cached_property
    def labels(self):
        """The split's labels, read once (the images are not decoded); None without."""
        if not self.has_labels:
            return None
        return np.concatenate([y for _, y in self._dataset.batch(4096).as_numpy_iterator()])

    def name_of(self, index):
        import tensorflow as tf

        return tf.strings.format("example {} of " + self.description.replace("{", "("), index)

    def first(self, n):
        split = self._like(self._dataset.take(n), min(n, self.count))
        if "labels" in self.__dict__ and self.labels is not None:
            split.__dict__["labels"] = self.labels[:n]
        return split

    def subset(self, indices):
        import tensorflow as tf

        indices = np.asarray(indices, np.int64)
        keep = np.zeros(self.count, bool)
        keep[indices] = True
        keep_t = tf.constant(keep)
        ds = (self._dataset.enumerate()
              .filter(lambda i, pair: tf.gather(keep_t, i))
              .map(lambda i, pair: pair))
        split = self._like(ds.apply(tf.data.experimental.assert_cardinality(int(keep.sum()))),
                           int(keep.sum()))
        if self.has_labels:
            split.__dict__["labels"] = self.labels[np.flatnonzero(keep)]
        return split


def _builder(source, data_dir):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(source.tfds_name, data_dir=data_dir or None)
    except tfds.core.registered.DatasetNotFoundError:
        name = source.tfds_name.split("/")[0]
        close = difflib.get_close_matches(name, tfds.list_builders(), n=3, cutoff=0.6)
        raise SourceError(
            f"--dataset={source.name}: tensorflow-datasets has no dataset {name!r}"
            + (f"; did you mean {', '.join('tfds/' + c for c in close)}?" if close else
               " (python -c \"import tensorflow_datasets as tfds; print(tfds.list_builders())\""
               " lists them)")) from None
    except ValueError as e:  # e.g. an unknown config
        raise SourceError(f"--dataset={source.name}: {e}") from None


def _split_name(source, role, builder):
    """The tfds split of `role`; datasets without a test split (where tfds knows their
    splits) hold out the last test_fraction of the train split."""
    name = source.split_name(role)
    known = set(builder.info.splits.keys()) if builder.info.splits else set()
    if known and source.test_split not in known and source.test_fraction:
        percent = round(100 * source.test_fraction)
        if role == "test":
            return f"{source.train_split}[{100 - percent}%:]"
        if name == source.train_split:
            return f"{name}[:{100 - percent}%]"
    if known and name not in known:
        raise SourceError(f"--dataset={source.name}: no split {name!r} (its splits: "
                          f"{', '.join(sorted(known))})")
    return name
