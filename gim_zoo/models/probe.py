"""Classifier on top of an encoder module: the linear probe and the supervised baseline.

Linear probe (frozen encoder): average-pool one module's patch grid to k x k (k=1 is the
paper's global pool), flatten, then a softmax layer. The same class with `frozen=False` is the
supervised baseline (same encoder trained end-to-end on the labels).

`fit_linear_probe` trains the softmax layer on features computed once (the encoder is
frozen and probe inputs are not augmented, so caching is exact and many times faster on
CPU than re-encoding every epoch). Features are standardised with the training features'
mean and (floored, see STD_FLOOR) std for the fit: unnormalised InfoNCE features differ in
scale by orders of magnitude between modules and runs. The affine map is then folded into
the Dense layer, so the probe is still one linear layer on the encoder's pooled output.
"""

import keras
import numpy as np
from keras import layers

from gim_zoo.models.encoder_wrapper import WrapsEncoder
from gim_zoo.models.patches import GridAveragePool
from gim_zoo.validation import check_int, check_number

@keras.saving.register_keras_serializable(package="gim_zoo")
class Classifier(WrapsEncoder, keras.Model):
    """images -> encoder module `module` -> pool to k x k -> Dense(num_classes, softmax)."""

    def __init__(self, encoder, num_classes=10, module=None, frozen=True, pool_to=1,
                 **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.num_classes = int(num_classes)
        self.module = int(module or encoder.num_modules)
        self.frozen = bool(frozen)
        self.pool_to = int(pool_to)
        self.encoder.trainable = not self.frozen
        self.pool = GridAveragePool(self.pool_to, name="pool")
        # float32 under mixed precision too: softmax and cross-entropy in float32
        self.head = layers.Dense(self.num_classes, activation="softmax", name="head",
                                 dtype="float32")
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
            "num_classes": self.num_classes,
            "module": self.module,
            "frozen": self.frozen,
            "pool_to": self.pool_to,
        }



def balanced_subset(labels, per_class, seed=0):
    """Indices of `per_class` examples of every class (all of them if per_class is None)."""
    labels = np.asarray(labels)
    if per_class is None:
        return np.arange(len(labels))
    per_class = check_int("per_class", per_class, low=1, note="None: every example")
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if per_class > len(members):
            raise ValueError(f"class {c} has {len(members)} examples, asked for {per_class}")
        picked.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picked))


def encode(encoder, module, batches, pool_to=1, verbose=0):
    """(N, k*k*C) pooled features of module `module` and the labels, from (image, label)
    batches; verbose: a Keras progress bar (a pass over 70,000 images through a deep
    encoder takes minutes on a CPU), 1 updated every batch, 2 one line per pass (logs)."""
    extractor = encoder.feature_model(module, pool_to=pool_to)
    total = int(batches.cardinality()) if hasattr(batches, "cardinality") else -1
    bar = (keras.utils.Progbar(total if total > 0 else None, unit_name="batch",
                               verbose=verbose) if verbose else None)
    features, labels = [], []
    for images, y in batches:
        # predict_on_batch runs Keras's compiled predict function: 1.6x the images/s of an
        # eager call here (gim-fmnist-resnet, batch 256, one thread, measured side by side)
        features.append(np.asarray(extractor.predict_on_batch(images)))
        labels.append(np.asarray(y))
        if bar is not None:
            bar.add(1)
    return np.concatenate(features), np.concatenate(labels)


# A feature's std is floored at this fraction of the mean std before folding: a rarely
# active feature (small std) would otherwise get a huge folded weight, harmless in float32
# but ruinous for int8, where the head's weights share one scale per output class
# (an exploratory check, not a project command: 8-epoch GIM encoder, 3x3 probe on 200
# labels/class, 2,000 test images; int8 agreed with float32 on 83% of them without the
# floor, 96% with it, float32 accuracy unchanged).
STD_FLOOR = 0.3


def _standardisation(x):
    """Per-feature (mean, scale) for the fit; scale 0 marks a constant feature (e.g. a
    channel the ReLU never lets through), which carries nothing and gets weight 0."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    floor = STD_FLOOR * float(std.mean()) if std.size else 0.0
    return mean, np.where(std > 0, np.maximum(std, floor), 0.0)


def fit_softmax(x_train, y_train, num_classes=10, steps=10000, batch_size=256,
                learning_rate=1e-3, seed=0, verbose=0):
    """Softmax regression on fixed features for about `steps` Adam steps.

    Counting steps rather than epochs gives small label budgets the same optimisation as
    large ones. Returns ((kernel, bias) acting on the raw features, final train accuracy).
    """
    import tensorflow as tf  # tf.data only: the module imports without TensorFlow (JAX)

    # checked first: steps=0 would make Keras run the repeated dataset forever
    steps, batch_size, learning_rate, num_classes = _check_fit_arguments(
        x_train, y_train, num_classes, steps, batch_size, learning_rate)
    mean, std = _standardisation(x_train)
    keras.utils.set_random_seed(seed)
    batch_size = min(batch_size, len(x_train))
    batches = (  # tf.data: the probe's input pipeline, like the others, is TensorFlow's
        tf.data.Dataset.from_tensor_slices(
            ((x_train - mean) / np.where(std > 0, std, 1.0), y_train))
        .shuffle(len(x_train), seed=seed).repeat().batch(batch_size)
    )
    head = keras.Sequential([keras.Input((x_train.shape[1],)),
                             layers.Dense(num_classes, activation="softmax")])
    head.compile(keras.optimizers.Adam(learning_rate),
                 "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = head.fit(batches, steps_per_epoch=steps, epochs=1, verbose=verbose, shuffle=False)
    kernel, bias = head.layers[-1].get_weights()
    kernel = np.where(std[:, None] > 0, kernel, 0.0)  # constant features carry nothing
    safe = np.where(std > 0, std, 1.0)
    folded = (kernel / safe[:, None], bias - (mean / safe) @ kernel)
    return folded, float(history.history["accuracy"][-1])


def _check_fit_arguments(x_train, y_train, num_classes, steps, batch_size, learning_rate):
    if len(x_train) == 0 or len(x_train) != len(y_train):
        raise ValueError(f"the softmax needs training features and as many labels; got "
                         f"{len(x_train)} feature rows and {len(y_train)} labels")
    return (check_int("steps", steps, low=1), check_int("batch_size", batch_size, low=1),
            check_number("learning_rate", learning_rate, low=0, low_open=True),
            check_int("num_classes", num_classes, low=2))


def fit_linear_probe(encoder, train_batches, test_batches, module=None, num_classes=10,
                     pool_to=1, steps=10000, batch_size=256, learning_rate=1e-3, seed=0,
                     verbose=0):
    """Train a softmax layer on frozen, pooled features of one module.

    Features are computed once (the encoder is frozen and probe inputs are not augmented,
    so caching is exact). Returns (Classifier with the fitted head, metrics dict).
    """
    module = module or encoder.num_modules
    x_train, y_train = encode(encoder, module, train_batches, pool_to, verbose)
    x_test, y_test = encode(encoder, module, test_batches, pool_to, verbose)
    return probe_from_features(encoder, module, pool_to, (x_train, y_train), (x_test, y_test),
                               num_classes, steps, batch_size, learning_rate, seed, verbose)


def probe_from_features(encoder, module, pool_to, train, test, num_classes=10, steps=10000,
                        batch_size=256, learning_rate=1e-3, seed=0, verbose=0):
    """The Classifier and metrics of a softmax fitted on precomputed (features, labels)."""
    (x_train, y_train), (x_test, y_test) = train, test
    (kernel, bias), train_accuracy = fit_softmax(
        x_train, y_train, num_classes, steps, batch_size, learning_rate, seed, verbose)
    probe = Classifier(encoder, num_classes, module=module, frozen=True, pool_to=pool_to)
    probe.head.set_weights([kernel, bias])
    probe.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    predictions = np.asarray(probe.head(x_test)).argmax(-1)
    metrics = {
        "module": module,
        "pool_to": pool_to,
        "train_examples": int(len(y_train)),
        "test_examples": int(len(y_test)),
        "train_accuracy": train_accuracy,
        "test_accuracy": float(np.mean(predictions == y_test)),
        "steps": int(steps),
        "batch_size": int(min(batch_size, len(x_train))),
    }
    return probe, metrics
