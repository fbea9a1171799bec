"""tf.data pipelines with the GIM paper's augmentation, images left as raw 0..255 floats.

Training: random crop + horizontal flip. Evaluation: centre crop. Normalisation lives in
the encoder, so exported models take plain images. Randomness is stateless and seeded
(`Dataset.random`), so a seed fixes the augmentation stream.

Fashion-MNIST: the random crop is a +-2 pixel translation (pad 2, crop 28), and the
evaluation image is the image itself. STL-10: grayscale, 64x64 crop of the 96x96 image.
"""

import numpy as np
import tensorflow as tf

SPECS = {
    # dataset: (stored size, crop size, pad before a random crop, to grayscale)
    "fashion_mnist": (28, 28, 2, False),
    "stl10": (96, 64, 0, True),
}


def _train_transform(dataset):
    size, crop, pad, gray = SPECS[dataset]

    def transform(image, seed):
        image = tf.cast(image, tf.float32)
        if gray and image.shape[-1] == 3:
            image = tf.image.rgb_to_grayscale(image)
        if pad:
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, (crop, crop, image.shape[-1]), seed=seed[0])
        return tf.image.stateless_random_flip_left_right(image, seed=seed[1])

    return transform


def _eval_transform(dataset):
    size, crop, pad, gray = SPECS[dataset]

    def transform(image):
        image = tf.cast(image, tf.float32)
        if gray and image.shape[-1] == 3:
            image = tf.image.rgb_to_grayscale(image)
        offset = (size - crop) // 2
        return image[offset : offset + crop, offset : offset + crop, :]

    return transform


def image_pipeline(images, labels=None, dataset="fashion_mnist", training=False,
                   batch_size=32, seed=0, shuffle_buffer=10_000, drop_remainder=None,
                   augment=True):
    """Batched tf.data.Dataset of images (and labels if given).

    images: uint8 array (N, H, W, C) or a tf.data.Dataset of (image, label) pairs.
    training: shuffle (and, if augment, random crop + flip); otherwise centre crop.
    """
    if dataset not in SPECS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(SPECS)}")
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
        transform = _train_transform(dataset)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda pair, s: (transform(pair[0], s), pair[1]), num_parallel_calls=tf.data.AUTOTUNE
        )
    else:
        transform = _eval_transform(dataset)
        ds = ds.map(lambda x, y: (transform(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    drop = training if drop_remainder is None else drop_remainder
    ds = ds.batch(batch_size, drop_remainder=drop)
    return ds.prefetch(tf.data.AUTOTUNE)


def images_only(ds):
    """Drop labels: what the self-supervised objectives train on."""
    return ds.map(lambda x, y: x)


def epochs_pipeline(images, labels=None, dataset="fashion_mnist", batch_size=32, seed=0,
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
    if dataset not in SPECS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(SPECS)}")
    images = np.asarray(images)
    n = len(images)
    labels = np.full((n,), -1, np.int64) if labels is None else np.asarray(labels)
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"{n} training examples make no batch of {batch_size}")
    used = steps * batch_size
    images_t, labels_t = tf.constant(images), tf.constant(labels)
    transform = _train_transform(dataset)
    seed = int(seed)

    def epoch_order(epoch):
        # Keys [seed, -1 - epoch] (shuffle) and [seed, epoch * 2**32 + i] (augmentation)
        # never collide.
        key = tf.stack([tf.constant(seed, tf.int64), -1 - epoch])
        order = tf.argsort(tf.random.stateless_uniform([n], seed=key))[:used]
        position = tf.range(used, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices(
            (tf.fill([used], epoch), position, tf.cast(order, tf.int64)))

    def load(epoch, position, index):
        image = tf.gather(images_t, index)
        if augment:
            base = epoch * 2**32 + 2 * position
            seeds = tf.stack([tf.stack([tf.constant(seed, tf.int64), base]),
                              tf.stack([tf.constant(seed, tf.int64), base + 1])])
            image = transform(image, seeds)
        else:
            image = _eval_transform(dataset)(image)
        return image, tf.gather(labels_t, index)

    ds = tf.data.Dataset.range(start_epoch, epochs).flat_map(epoch_order)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
