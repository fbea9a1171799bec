"""Lottery tickets: binary masks on kernels and the prune-with-rewind callback.

Frankle & Carbin (ICLR 2019) and late rewinding (Frankle et al. 2019): train, remove the
smallest-magnitude surviving weights, reset the survivors (and every other unpruned
variable) to their values at the rewind point, train again with a fresh optimizer.

Masks are Keras `Constraint`s on the kernels: every optimizer applies a variable's
constraint after each update, on every backend, so a pruned weight stays exactly zero
(Adam's momentum cannot revive it). Biases and normalisation parameters are never pruned.
Written in keras.ops / numpy only.

JAX: the masks are not model state, so Keras's jitted train step holds their values as
constants. Whenever masks change (`assign`) or a fit starts with PruneWithRewind, the
model's train function is rebuilt so that it is traced with the current masks.
"""

import os
from pathlib import Path

import keras
import numpy as np
from keras import ops

# Frankle & Carbin's per-round rates: fully-connected 20%, output layer 10%, conv 10-15%.
LAYERWISE_RATES = {"dense": 0.2, "output": 0.1, "conv": 0.15}


@keras.saving.register_keras_serializable(package="gim_zoo")
class MaskConstraint(keras.constraints.Constraint):
    """w -> w * mask; the optimizer calls it after every update."""

    def __init__(self, mask):
        self.mask = mask

    def __call__(self, w):
        return w * ops.cast(self.mask, w.dtype)

    def get_config(self):
        return {}  # the mask itself is saved by PruningMasks, not in the config


def prunable_kernels(model):
    """[(path, kind, kernel variable)] of Dense / Conv kernels; kind: dense, conv or output."""
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Dense):
            found.append((layer.kernel.path, "dense", layer.kernel))
        elif isinstance(layer, keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D):
            found.append((layer.kernel.path, "conv", layer.kernel))
    dense = [i for i, (_, kind, _) in enumerate(found) if kind == "dense"]
    if dense:  # the last Dense layer is the output layer (a smaller rate)
        path, _, kernel = found[dense[-1]]
        found[dense[-1]] = (path, "output", kernel)
    return found


class PruningMasks:
    """One {0, 1} mask per prunable kernel, attached to the kernel as its constraint."""

    def __init__(self, model, exclude=()):
        self.model = model
        self.kernels = [(p, k, v) for p, k, v in prunable_kernels(model)
                        if not any(e in p for e in exclude)]
        if not self.kernels:
            raise ValueError(f"{model.name} has no Dense or Conv kernels to prune")
        self.masks = {}
        for path, _, kernel in self.kernels:
            mask = keras.Variable(np.ones(kernel.shape, "float32"), trainable=False,
                                  name=path.replace("/", "_") + "_mask")
            kernel.constraint = MaskConstraint(mask)
            self.masks[path] = mask

    def unmasked_weights(self, model):
        """model.weights without the mask variables: what a rewind or re-init resets."""
        mask_ids = {id(m) for m in self.masks.values()}
        return [v for v in model.weights if id(v) not in mask_ids]

    def numpy(self):
        return {path: np.asarray(mask.numpy()) for path, mask in self.masks.items()}

    def assign(self, masks):
        for path, value in masks.items():
            self.masks[path].assign(np.asarray(value, "float32"))
        self.apply()
        retrace_train_function(self.model)

    def apply(self):
        """Zero the pruned weights now (e.g. after a rewind)."""
        for path, _, kernel in self.kernels:
            kernel.assign(kernel.numpy() * self.masks[path].numpy())

    def remaining(self):
        """Fraction of prunable weights still alive."""
        masks = self.numpy()
        alive = sum(int(np.count_nonzero(m)) for m in masks.values())
        return alive / sum(m.size for m in masks.values())

    def counts(self):
        return {path: (int(np.count_nonzero(m)), int(m.size)) for path, m in self.numpy().items()}

    def magnitude_prune(self, rates=None, global_rate=None):
        """New masks removing the smallest surviving |w|: per layer at rates[kind], or
        pooled over all kernels at global_rate. Returns the masks (not yet assigned)."""
        masks = self.numpy()
        weights = {path: np.abs(kernel.numpy()) for path, _, kernel in self.kernels}
        if global_rate is not None:
            return _prune_pooled(masks, weights, global_rate)
        rates = rates or LAYERWISE_RATES
        new = {}
        for path, kind, _ in self.kernels:
            new[path] = _prune_one(masks[path], weights[path], rates[kind])
        return new

    def random_prune(self, like, seed=0):
        """Random masks with exactly the per-layer counts of `like` (the control)."""
        rng = np.random.default_rng(seed)
        out = {}
        for path, mask in like.items():
            flat = np.zeros(mask.size, "float32")
            flat[rng.choice(mask.size, int(mask.sum()), replace=False)] = 1.0
            out[path] = flat.reshape(mask.shape)
        return out

    def save(self, path):
        """Masks as .npz in kernel order (layer names differ between model instances),
        written to a temporary file and renamed."""
        path = Path(path)
        tmp = path.with_name(f".tmp-{path.name}")
        with open(tmp, "wb") as f:
            np.savez(f, *self.numpy().values())
        os.replace(tmp, path)

    def load(self, path):
        with np.load(path) as data:
            arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
        shapes = [tuple(m.shape) for m in self.masks.values()]
        if [a.shape for a in arrays] != shapes:
            raise ValueError(f"{path} holds masks of shapes {[a.shape for a in arrays]}, "
                             f"the model's kernels are {shapes}")
        self.assign(dict(zip(self.masks, arrays)))


def _prune_one(mask, magnitude, rate):
    """Remove round(rate * alive) of the smallest surviving weights of one kernel."""
    alive = np.flatnonzero(mask.reshape(-1) > 0)
    n_remove = int(round(rate * alive.size))
    new = mask.copy().reshape(-1)
    if n_remove:
        order = np.argsort(magnitude.reshape(-1)[alive], kind="stable")
        new[alive[order[:n_remove]]] = 0.0
    return new.reshape(mask.shape)


def _prune_pooled(masks, weights, rate):
    """Global pruning: pool every surviving |w| and remove round(rate * alive) smallest."""
    paths = list(masks)
    alive = [np.flatnonzero(masks[p].reshape(-1) > 0) for p in paths]
    magnitudes = np.concatenate([weights[p].reshape(-1)[a] for p, a in zip(paths, alive)])
    n_remove = int(round(rate * magnitudes.size))
    owner = np.concatenate([np.full(a.size, i) for i, a in enumerate(alive)])
    position = np.concatenate(alive)
    new = {p: masks[p].copy().reshape(-1) for p in paths}
    for k in np.argsort(magnitudes, kind="stable")[:n_remove]:
        new[paths[owner[k]]][position[k]] = 0.0
    return {p: new[p].reshape(masks[p].shape) for p in paths}


class PruneWithRewind(keras.callbacks.Callback):
    """Captures the rewind point during `fit`; `prune_and_rewind()` ends a round.

    rewind_step: 0 rewinds to the initial weights (original lottery tickets); k > 0 to
    the weights after k training steps (late rewinding). Everything except the masks is
    rewound (kernels, biases, norms); the optimizer's state is reset to fresh.
    prune_at_end: prune and rewind automatically in on_train_end (one fit = one round).
    """

    def __init__(self, masks, rewind_step=0, rates=None, global_rate=None,
                 prune_at_end=False, verbose=0):
        super().__init__()
        self.masks = masks
        self.rewind_step = int(rewind_step)
        self.rates = rates or LAYERWISE_RATES
        self.global_rate = global_rate
        self.prune_at_end = prune_at_end
        self.verbose = verbose
        self.rewind_point = None
        self._step = 0

    def capture(self):
        self.rewind_point = [np.array(v.numpy()) for v in self._rewound_variables()]

    def _rewound_variables(self):
        return self.masks.unmasked_weights(self.model)

    def on_train_begin(self, logs=None):
        self._step = 0
        self.masks.apply()
        retrace_train_function(self.model)  # JAX: the masks may have changed since
        if self.rewind_point is None and self.rewind_step == 0:
            self.capture()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.rewind_point is None and self._step == self.rewind_step:
            self.capture()

    def on_train_end(self, logs=None):
        if self.prune_at_end:
            self.prune_and_rewind()

    def prune_and_rewind(self):
        """Prune by magnitude, rewind to the rewind point, reset the optimizer."""
        if self.rewind_point is None:
            raise RuntimeError(
                f"no rewind point: training stopped before step {self.rewind_step}")
        new_masks = self.masks.magnitude_prune(self.rates, self.global_rate)
        self.rewind()
        self.masks.assign(new_masks)
        if self.verbose:
            print(f"pruned: {100 * self.masks.remaining():.1f}% of weights remain")
        return new_masks

    def rewind(self):
        for variable, value in zip(self._rewound_variables(), self.rewind_point):
            variable.assign(value)
        self.masks.apply()
        reset_optimizer(self.model.optimizer)

    def save_rewind_point(self, path):
        path = Path(path)
        tmp = path.with_name(f".tmp-{path.name}")
        with open(tmp, "wb") as f:
            np.savez(f, *self.rewind_point)
        os.replace(tmp, path)
        return path

    def load_rewind_point(self, path):
        with np.load(path) as data:
            self.rewind_point = [data[f"arr_{i}"] for i in range(len(data.files))]


def retrace_train_function(model):
    """Under JAX, replace the model's compiled train function by a new one, traced (with
    the masks' current values) at its first call; safe during fit, which looks the train
    function up at every step. TensorFlow and torch read the mask variables at every step."""
    if keras.backend.backend() == "jax" and getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)


def reset_optimizer(optimizer):
    """A fresh optimizer without rebuilding: zero every slot and the step counter."""
    if optimizer is None or not optimizer.built:
        return
    for variable in optimizer.variables:
        if "learning_rate" in variable.path:  # a constant, not state
            continue
        variable.assign(np.zeros(variable.shape, variable.dtype))

