"""tf.data pipelines with the GIM paper's augmentation, images left as raw 0..255 floats.

Training: random crop + horizontal flip. Evaluation: centre crop. Normalisation lives in
the encoder, so exported models take plain images. Randomness is stateless and seeded,
so a seed fixes the augmentation stream. The geometry (size, crop, padding, channels)
is the data source's (gim_zoo.data.sources): Fashion-MNIST's random crop is a +-2 pixel
translation (pad 2, crop 28) and its evaluation image is the image itself; STL-10's is a
grayscale 64x64 crop of the 96x96 image. Images of another size are resized to the
source's size, and channels converted (RGB -> grayscale, grayscale -> RGB, alpha dropped).

`train_pipeline` / `eval_pipeline` take any loaded split: in memory, or streamed from
files (decoded in parallel, never loaded whole). A file that does not decode stops the
pipeline with an error naming it (`corrupt_images_named` turns that into a one-line
CorruptImageError), not a bare tf.data traceback.
"""

import contextlib
import re

import numpy as np
import tensorflow as tf

from gim_zoo.data.sources import FASHION_MNIST, image_source

# Encoded examples permuted together by a streamed tfds split's per-epoch shuffle (its records
# are read in a fixed order; a folder split permutes its whole file list instead).
STREAM_SHUFFLE_BUFFER = 4096
_UNDECODABLE = "gim_zoo: cannot decode image:"


class CorruptImageError(ValueError):
    """An image file (or record) that does not decode; the message names it."""


@contextlib.contextmanager
def corrupt_images_named():
    """Turn the input pipeline's "cannot decode" failure into a CorruptImageError whose
    message names the file (instead of tf.data's traceback)."""
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        found = re.search(re.escape(_UNDECODABLE) + r"\s*(.*?)\]", e.message)
        if not found:
            raise
        raise CorruptImageError(
            f"{found.group(1).strip()} does not decode as an image (PNG, JPEG, GIF, BMP): "
            "delete or replace it, then re-run the same command (it resumes)") from None


def _source(dataset):
    source = image_source(dataset)
    source.check_fitted()
    return source


def _convert_channels(image, channels):
    """float image -> `channels` (1: grayscale, 3: RGB), alpha dropped."""
    have = image.shape[-1]
    if have is not None:  # known statically: arrays, tfds features of fixed shape
        if have in (2, 4):
            image, have = image[..., : have - 1], have - 1
        if have == channels:
            return image
        if have == 3 and channels == 1:
            return tf.image.rgb_to_grayscale(image)
        if have == 1 and channels == 3:
            return tf.tile(image, [1, 1, 3])
        raise ValueError(f"cannot convert {have}-channel images to {channels} channels")
    count = tf.shape(image)[-1]
    image = image[..., : count - 1 + count % 2]  # 2 -> 1, 4 -> 3 (alpha dropped)
    count = tf.shape(image)[-1]
    if channels == 1:
        image = tf.cond(count == 3, lambda: tf.image.rgb_to_grayscale(image),
                        lambda: image[..., :1])
    else:
        image = tf.cond(count == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image[..., :3])
    return tf.ensure_shape(image, [None, None, channels])


def _resize(image, size):
    """Bring an image to size x size (antialiased bilinear) unless it is already."""
    height, width = image.shape[0], image.shape[1]
    if height == size and width == size:
        return image
    if height is not None and width is not None:
        return tf.image.resize(image, (size, size), antialias=True)
    same = tf.logical_and(tf.shape(image)[0] == size, tf.shape(image)[1] == size)
    image = tf.cond(same, lambda: image,
                    lambda: tf.image.resize(image, (size, size), antialias=True))
    return tf.ensure_shape(image, [size, size, image.shape[-1]])


def _pixels(image, source):
    """Any image -> float32 source.size x source.size x source.channels."""
    image = tf.cast(image, tf.float32)
    return _resize(_convert_channels(image, source.channels), source.size)


def _train_transform(source):
    crop, pad = source.crop, source.pad

    def transform(image, seed):
        image = _pixels(image, source)
        if pad:
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, (crop, crop, image.shape[-1]), seed=seed[0])
        return tf.image.stateless_random_flip_left_right(image, seed=seed[1])

    return transform


def _eval_transform(source):
    size, crop = source.size, source.crop

    def transform(image):
        image = _pixels(image, source)
        offset = (size - crop) // 2
        return image[offset : offset + crop, offset : offset + crop, :]

    return transform


def image_pipeline(images, labels=None, dataset=FASHION_MNIST, training=False,
                   batch_size=32, seed=0, shuffle_buffer=10_000, drop_remainder=None,
                   augment=True):
    """Batched tf.data.Dataset of images (and labels if given).

    images: uint8 array (N, H, W, C) or a tf.data.Dataset of (image, label) pairs.
    dataset: a data source (gim_zoo.data.sources) or its name; its geometry is used.
    training: shuffle (and, if augment, random crop + flip); otherwise centre crop.
    """
    source = _source(dataset)
    if isinstance(images, tf.data.Dataset):
        ds = images
    else:
        images = np.asarray(images)
        if labels is None:
            labels = np.full((len(images),), -1, np.int64)
        ds = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels)))
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if training and augment:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        seeds = seeds.batch(4).map(lambda s: tf.reshape(tf.cast(s % (2**31), tf.int32), (2, 2)))
        transform = _train_transform(source)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, s: (transform(pair[0], s), pair[1]), num_parallel_calls=tf.data.AUTOTUNE
        )
    else:
        transform = _eval_transform(source)
        ds = ds.map(lambda x, y: (transform(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    drop = training if drop_remainder is None else drop_remainder
    ds = ds.batch(batch_size, drop_remainder=drop)
    return ds.prefetch(tf.data.AUTOTUNE)


def images_only(ds):
    """Drop labels: what the self-supervised objectives train on."""
    return ds.map(lambda x, y: x)


def _augmentation_seeds(seed, epoch, position):
    # Keys [seed, -1 - epoch] (shuffle) and [seed, epoch * 2**32 + i] (augmentation)
    # never collide.
    base = epoch * 2**32 + 2 * position
    return tf.stack([tf.stack([tf.constant(seed, tf.int64), base]),
                     tf.stack([tf.constant(seed, tf.int64), base + 1])])


def _permutation(seed, epoch, n, used):
    key = tf.stack([tf.constant(seed, tf.int64), -1 - epoch])
    return tf.argsort(tf.random.stateless_uniform([n], seed=key))[:used]


def epochs_pipeline(images, labels=None, dataset=FASHION_MNIST, batch_size=32, seed=0,
                    epochs=1, start_epoch=0, augment=True):
    """Training batches of epochs start_epoch..epochs-1 as one dataset (fit it with
    steps_per_epoch = len(images) // batch_size), each epoch a pure function of
    (seed, epoch): a full stateless permutation, then crop + flip seeded by
    (seed, epoch, position).

    image_pipeline reshuffles from a generator that restarts with the process, so a run
    resumed at epoch e would replay epoch 0's order; here epoch e is the same batches
    whether or not the process was restarted, which is what lets a killed-and-resumed run
    end bit-identical to an uninterrupted one.

    images: uint8 array (N, H, W, C) (kept in memory, as image_pipeline's).
    """
    source = _source(dataset)
    images = np.asarray(images)
    n = len(images)
    labels = np.full((n,), -1, np.int64) if labels is None else np.asarray(labels)
    used = _used(n, batch_size)
    images_t, labels_t = tf.constant(images), tf.constant(labels)
    transform = _train_transform(source)
    seed = int(seed)

    def epoch_order(epoch):
        order = _permutation(seed, epoch, n, used)
        position = tf.range(used, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices(
            (tf.fill([used], epoch), position, tf.cast(order, tf.int64)))

    def load(epoch, position, index):
        image = tf.gather(images_t, index)
        if augment:
            image = transform(image, _augmentation_seeds(seed, epoch, position))
        else:
            image = _eval_transform(source)(image)
        return image, tf.gather(labels_t, index)

    ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(epoch_order)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _used(n, batch_size):
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"{n} training examples make no batch of {batch_size}")
    return steps * batch_size


def _labels_tensor(split):
    labels = split.labels if split.labels is not None else np.full(split.count, -1, np.int64)
    return tf.constant(np.asarray(labels, np.int64))


def train_pipeline(split, dataset, batch_size=32, seed=0, epochs=1, start_epoch=0,
                   augment=True):
    """epochs_pipeline for any loaded split (gim_zoo.data.splits): epochs
    start_epoch..epochs-1, each a pure function of (seed, epoch), so a resumed run reads
    the batches an uninterrupted one would. In memory: epochs_pipeline itself. A folder:
    a full permutation of its files per epoch; a tfds split: its records (in tfds' fixed
    order) through a shuffle buffer seeded by (seed, epoch). Fit with steps_per_epoch =
    split.count // batch_size."""
    source = _source(dataset)
    if not split.decodes:
        return epochs_pipeline(split.images, split.labels, source, batch_size, seed, epochs,
                               start_epoch, augment)
    n, seed = split.count, int(seed)
    used = _used(n, batch_size)
    labels_t = _labels_tensor(split)
    transform = _train_transform(source) if augment else None
    evaluate = _eval_transform(source)

    def augmented(item, epoch, position):
        image = split.decode(item)
        return (transform(image, _augmentation_seeds(seed, epoch, position)) if augment
                else evaluate(image))

    if split.random_access:
        items = split.items()

        def epoch_order(epoch):
            order = tf.cast(_permutation(seed, epoch, n, used), tf.int64)
            return tf.data.Dataset.from_tensor_slices(
                (tf.fill([used], epoch), tf.range(used, dtype=tf.int64), order))

        def load(epoch, position, index):
            return (epoch * used + position,
                    augmented(tf.gather(items, index), epoch, position),
                    tf.gather(labels_t, index))

        def name_of(key):
            epoch, position = key // used, key % used
            return split.name_of(tf.gather(items, _permutation(seed, epoch, n, used)[position]))
    else:
        examples = split.examples()

        def epoch_order(epoch):
            # Stateless, so a pure function of (seed, epoch): the records (in tfds' fixed
            # order) rotated by a random offset, then each window of STREAM_SHUFFLE_BUFFER
            # records permuted. (tf.data's shuffle takes no per-epoch tensor seed here.)
            key = tf.stack([tf.constant(seed, tf.int64), -1 - epoch])
            offset = tf.random.stateless_uniform([], key, 0, n, tf.int64)
            rotated = examples.skip(offset).concatenate(examples.take(offset))

            def permute(window, images, labels):
                order = tf.random.experimental.stateless_shuffle(
                    tf.range(tf.shape(labels, out_type=tf.int64)[0]),
                    tf.stack([key[0], epoch * 2**20 + window]))
                return tf.data.Dataset.from_tensor_slices(
                    (tf.gather(images, order), tf.gather(labels, order)))

            shuffled = rotated.batch(STREAM_SHUFFLE_BUFFER).enumerate().flat_map(
                lambda window, batch: permute(window, *batch)).take(used)
            return shuffled.enumerate().map(
                lambda position, pair: (epoch, position, pair[0], pair[1]))

        def load(epoch, position, item, label):
            return epoch * used + position, augmented(item, epoch, position), label

        def name_of(key):
            return split.name_of(tf.strings.format("{} (epoch {})", (key % used, key // used)))

    ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(epoch_order)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    ds = _decode_failures_named(ds, start_epoch * used, max(epochs, start_epoch) * used,
                                name_of, (source.crop, source.crop, source.channels))
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_pipeline(split, dataset, batch_size=256):
    """Centre-cropped (image, label) batches of a loaded split, in its order (label -1
    where it has none)."""
    source = _source(dataset)
    if not split.decodes:
        return image_pipeline(split.images, split.labels, source, batch_size=batch_size)
    transform = _eval_transform(source)
    labels_t = _labels_tensor(split)
    if split.random_access:
        items = split.items()
        ds = tf.data.Dataset.from_tensor_slices((tf.range(split.count, dtype=tf.int64), items,
                                                 labels_t))

        def name_of(key):
            return split.name_of(tf.gather(items, key))
    else:
        ds = split.examples().enumerate().map(lambda key, pair: (key, pair[0], pair[1]))
        name_of = split.name_of
    ds = ds.map(lambda key, item, label: (key, transform(split.decode(item)), label),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = _decode_failures_named(ds, 0, split.count, name_of,
                                (source.crop, source.crop, source.channels))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _decode_failures_named(ds, first_key, end_key, name_of, shape):
    """(key, image, label) elements with consecutive keys first_key..end_key-1 -> (image,
    label); an element whose decoding failed is dropped by ignore_errors, and the gap it
    leaves stops the pipeline with an assertion naming it (name_of(key)): tf.data's own
    decode error names no file. A sentinel after the last element catches a gap at the
    end."""
    sentinel = tf.data.Dataset.from_tensors(
        (tf.constant(end_key, tf.int64), tf.zeros(shape, tf.float32), tf.constant(-1, tf.int64)))
    ds = ds.ignore_errors().concatenate(sentinel)

    def check(expected, element):
        key = element[0]
        ok = tf.equal(key, expected)
        message = tf.cond(ok, lambda: tf.constant(""),
                          lambda: tf.strings.join([_UNDECODABLE, " ", name_of(expected)]))
        with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
            return key + 1, tuple(tf.identity(t) for t in element)

    ds = ds.scan(tf.constant(first_key, tf.int64), check)
    return ds.filter(lambda key, image, label: key < end_key).map(
        lambda key, image, label: (image, label))
