"""Classifier on top of an encoder module: the linear probe and the supervised baseline.

Linear probe (frozen encoder) = the paper's evaluation: global average pool of one
module's patch grid, then a softmax layer. The same class with `frozen=False` is the
supervised baseline (same encoder trained end-to-end on the labels).

`fit_linear_probe` trains the softmax layer on features computed once (the encoder is
frozen and probe inputs are not augmented, so caching is exact and many times faster on
CPU than re-encoding every epoch). Features are standardised with the training features'
mean and std for the fit (unnormalised InfoNCE features differ in scale by orders of
magnitude between modules and runs); the affine map is then folded into the Dense layer,
so the probe is still one linear layer on the encoder's pooled output.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="gim_zoo")
class Classifier(keras.Model):
    """images -> encoder module `module` -> global average pool -> Dense(num_classes, softmax)."""

    def __init__(self, encoder, num_classes=10, module=None, frozen=True, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.num_classes = int(num_classes)
        self.module = int(module or encoder.num_modules)
        self.frozen = bool(frozen)
        self.encoder.trainable = not self.frozen
        self.pool = layers.GlobalAveragePooling2D(name="global_pool")
        self.head = layers.Dense(self.num_classes, activation="softmax", name="head")
        # Build by one call on a blank image: Keras records the input signature that its
        # exporters (SavedModel, TFLite) need.
        size, channels = encoder.image_size, encoder.channels
        self(np.zeros((1, size, size, channels), "float32"))

    def call(self, images, training=False):
        grid = self.encoder.module_outputs(
            images, upto=self.module, training=training and not self.frozen
        )[-1]
        return self.head(self.pool(grid))

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "num_classes": self.num_classes,
            "module": self.module,
            "frozen": self.frozen,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def balanced_subset(labels, per_class, seed=0):
    """Indices of `per_class` examples of every class (all of them if per_class is None)."""
    labels = np.asarray(labels)
    if per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if per_class > len(members):
            raise ValueError(f"class {c} has {len(members)} examples, asked for {per_class}")
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def encode(encoder, module, batches):
    """Pooled (N, C) features of module `module` for a dataset of (image, label) batches."""
    extractor = encoder.feature_model(module, pooled=True)
    features, labels = [], []
    for images, y in batches:
        features.append(extractor(images, training=False))
        labels.append(y)
    return np.concatenate([np.asarray(f) for f in features]), np.concatenate(
        [np.asarray(y) for y in labels])


def fit_linear_probe(encoder, train_batches, test_batches, module=None, num_classes=10,
                     steps=3000, batch_size=256, learning_rate=1e-3, seed=0, verbose=0):
    """Train a softmax layer on frozen features for about `steps` Adam steps.

    Returns (Classifier with the fitted head, metrics dict). Counting steps rather than
    epochs gives small label budgets the same optimisation as large ones. (tf.data
    here: the probe's input pipeline, like the others, is TensorFlow's.)
    """
    module = module or encoder.num_modules
    x_train, y_train = encode(encoder, module, train_batches)
    x_test, y_test = encode(encoder, module, test_batches)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0) + 1e-6
    keras.utils.set_random_seed(seed)
    batch_size = min(batch_size, len(x_train))
    batches = (
        tf.data.Dataset.from_tensor_slices(((x_train - mean) / std, y_train))
        .shuffle(len(x_train), seed=seed).repeat().batch(batch_size)
    )
    head = keras.Sequential([keras.Input((x_train.shape[1],)),
                             layers.Dense(num_classes, activation="softmax")])
    head.compile(keras.optimizers.Adam(learning_rate),
                 "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = head.fit(batches, steps_per_epoch=steps, epochs=1, verbose=verbose, shuffle=False)
    kernel, bias = head.layers[-1].get_weights()
    probe = Classifier(encoder, num_classes, module=module, frozen=True)
    probe.head.set_weights([kernel / std[:, None], bias - (mean / std) @ kernel])
    probe.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    predictions = probe.head(x_test).numpy().argmax(-1)
    metrics = {
        "module": module,
        "train_examples": int(len(y_train)),
        "test_examples": int(len(y_test)),
        "train_accuracy": float(history.history["accuracy"][-1]),
        "test_accuracy": float(np.mean(predictions == y_test)),
        "steps": int(steps),
        "batch_size": int(batch_size),
    }
    return probe, metrics
