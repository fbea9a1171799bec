"""UCI handwritten digits (scikit-learn's bundled copy) as 28x28 images: a transfer target.

Why this set: it is real data that ships inside the scikit-learn wheel (no download), it is
small (1,797 images, so fine-tuning on a few labels per class is a genuine few-label task),
and it is a different domain from Fashion-MNIST. The 8x8 images (values 0..16) are resized
to 20x20 and padded to 28x28, the layout of MNIST, and scaled to 0..255 like the encoders'
pre-training pixels.

The test split is fixed (half of every class, chosen with seed 0) whatever the run's seed;
a run's seed only chooses which of the other half's images are its labelled examples.
"""

import numpy as np

TEST_SEED = 0


def load_digits_images(image_size=28, digit_size=20):
    """(images (N, image_size, image_size, 1) float32 in 0..255, labels (N,) int32)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise ImportError("the digits transfer task needs scikit-learn: "
                          "`pip install scikit-learn`") from e
    import tensorflow as tf  # data pipelines are tf.data / tf.image, as everywhere here

    digits = load_digits()
    small = digits.images[..., None].astype("float32") * (255.0 / 16.0)
    big = tf.image.resize(small, (digit_size, digit_size), method="bilinear").numpy()
    pad = (image_size - digit_size) // 2
    rest = image_size - digit_size - pad
    images = np.pad(big, ((0, 0), (pad, rest), (pad, rest), (0, 0)))
    return np.clip(images, 0, 255).astype("float32"), digits.target.astype("int32")


def digits_split(labels_per_class, seed, test_fraction=0.5):
    """(train_x, train_y, test_x, test_y): a fixed test half, `labels_per_class` training
    examples per class drawn from the other half by `seed` (0: all of that half)."""
    images, labels = load_digits_images()
    test_rng = np.random.default_rng(TEST_SEED)
    pool, test = [], []
    for c in np.unique(labels):
        idx = test_rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(len(idx) * test_fraction))
        test.extend(idx[:n_test])
        pool.append(idx[n_test:])
    rng = np.random.default_rng(seed)
    train = []
    for idx in pool:
        if labels_per_class and labels_per_class > len(idx):
            raise ValueError(f"labels_per_class={labels_per_class} is more than the "
                             f"{len(idx)} training digits some class has")
        chosen = rng.permutation(idx)
        train.extend(chosen[:labels_per_class] if labels_per_class else chosen)
    train, test = np.sort(train), np.sort(test)
    return images[train], labels[train], images[test], labels[test]
