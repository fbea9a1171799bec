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
