"""Lottery-ticket masks: one {0, 1} mask per Dense / Conv kernel, and the pruning strategies.

Masks are Keras `Constraint`s on the kernels: every optimizer applies a variable's
constraint after each update, on every backend, so a pruned weight stays exactly zero
(Adam's momentum cannot revive it). Biases and normalisation parameters are never pruned.
Pruning strategies: by magnitude per layer (Frankle & Carbin's rates) or pooled over all
kernels (global, scored by magnitude or by LAMP), and random masks with a ticket's
per-layer counts (the control).
Written in keras.ops / numpy only.

    masks = PruningMasks(model)                 # all ones: nothing pruned yet
    masks.assign(masks.magnitude_prune())       # one round: 20% of dense, 10% of output
    masks.save("masks.npz")

JAX: the masks are not model state, so Keras's jitted train step holds their values as
constants. Whenever masks change (`assign`) or a fit starts with PruneWithRewind, the
model's train function is rebuilt so that it is traced with the current masks.
"""

import keras
import numpy as np
from keras import ops

from gim_zoo.files import atomic_path
from gim_zoo.validation import check_rate

# Frankle & Carbin's per-round rates: fully-connected 20%, output layer 10%, conv 10-15%.
LAYERWISE_RATES = {"dense": 0.2, "output": 0.1, "conv": 0.15}
# How global pruning ranks the pooled weights: by |w|, or by LAMP scores (Lee et al.,
# ICLR 2021), which compare each weight with the larger ones of its own layer, so that a
# layer of many small weights (a wide 3x3 conv) is not emptied before the others.
GLOBAL_SCORES = ("magnitude", "lamp")


def check_global_score(global_score):
    if global_score not in GLOBAL_SCORES:
        raise ValueError(f"global_score must be one of {GLOBAL_SCORES}, got {global_score!r}")
    return global_score


def check_rates(rates=None, global_rate=None, kinds=None):
    """The pruning rates, checked: global_rate None or a rate, else `rates` a {kind: rate}
    dict (default LAYERWISE_RATES) of known kinds with a rate for every kind in `kinds`
    (those a model has). Each rate is the fraction of surviving weights removed,
    0 <= rate < 1: a negative one would keep more than survives, 1 or more prunes all.
    Returns (rates, global_rate)."""
    if global_rate is not None:
        return rates, check_rate("global_rate", global_rate)
    rates = LAYERWISE_RATES if rates is None else rates
    if not isinstance(rates, dict):
        raise ValueError(f"rates must be a {{kind: rate}} dict, e.g. {LAYERWISE_RATES}; got "
                         f"{rates!r}")
    unknown = sorted(set(rates) - set(LAYERWISE_RATES))
    if unknown:
        raise ValueError(f"rates has unknown layer kinds {unknown}: the kinds are "
                         f"{sorted(LAYERWISE_RATES)}")
    missing = sorted(set(kinds or ()) - set(rates))
    if missing:
        raise ValueError(f"rates has no rate for {missing}, layer kinds the model has; give "
                         f"one for each (e.g. {LAYERWISE_RATES})")
    return {kind: check_rate(f"rates[{kind!r}]", rate) for kind, rate in rates.items()}, None


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


def save_arrays(path, arrays):
    """Arrays as an .npz in their order (arr_0, arr_1, ...), written atomically: masks and
    rewind points are matched to variables by position, as layer names differ between
    model instances."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, *arrays)


def load_arrays(path):
    """The arrays `save_arrays` wrote, in order (a damaged file is refused, naming it)."""
    import zipfile

    from gim_zoo.files import DamagedFileError

    try:
        with np.load(path) as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]
    except (zipfile.BadZipFile, ValueError, KeyError, EOFError) as e:
        raise DamagedFileError(f"{path} cannot be read ({type(e).__name__}: {e}): it is "
                               "damaged; restore it from a copy") from None


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

    def kinds(self):
        """The layer kinds (dense, output, conv) among the masked kernels."""
        return {kind for _, kind, _ in self.kernels}

    def check_model(self, model, who="PruningMasks"):
        """Refuse a `model` that is not the one these masks were made for (their kernels
        are not its variables): its weights would be rewound or pruned by another's."""
        own = {id(v) for v in model.weights}
        if model is not self.model and not all(id(k) in own for _, _, k in self.kernels):
            raise ValueError(
                f"{who}'s masks belong to model {self.model.name!r}, not to "
                f"{model.name!r} (the model being fit): make them with "
                f"PruningMasks({model.name}) (masks of another instance of the same network "
                "load with PruningMasks.load)")

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

    def magnitude_prune(self, rates=None, global_rate=None, global_score="magnitude"):
        """New masks removing the smallest surviving |w|: per layer at rates[kind], or
        pooled over all kernels at global_rate, ranked by `global_score` (GLOBAL_SCORES).
        Returns the masks (not yet assigned)."""
        rates, global_rate = check_rates(rates, global_rate, self.kinds())
        check_global_score(global_score)
        masks = self.numpy()
        weights = {path: np.abs(kernel.numpy()) for path, _, kernel in self.kernels}
        if global_rate is not None:
            if global_score == "lamp":
                weights = {p: lamp_scores(w, masks[p]) for p, w in weights.items()}
            return _prune_pooled(masks, weights, global_rate)
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
        """Masks as .npz in kernel order (layer names differ between model instances)."""
        save_arrays(path, self.numpy().values())

    def read(self, path):
        """Masks saved by `save` (from this model or another instance of the same network)
        as {this model's kernel path: mask}, not yet assigned: the one mask reader."""
        arrays = load_arrays(path)
        shapes = [tuple(m.shape) for m in self.masks.values()]
        if [a.shape for a in arrays] != shapes:
            raise ValueError(f"{path} holds masks of shapes {[a.shape for a in arrays]}, "
                             f"the model's kernels are {shapes}")
        return dict(zip(self.masks, arrays))

    def load(self, path):
        """Read the masks at `path` and assign them (pruned weights become zero)."""
        self.assign(self.read(path))


def _prune_one(mask, magnitude, rate):
    """Remove round(rate * alive) of the smallest surviving weights of one kernel."""
    alive = np.flatnonzero(mask.reshape(-1) > 0)
    n_remove = int(round(rate * alive.size))
    new = mask.copy().reshape(-1)
    if n_remove:
        order = np.argsort(magnitude.reshape(-1)[alive], kind="stable")
        new[alive[order[:n_remove]]] = 0.0
    return new.reshape(mask.shape)


def lamp_scores(magnitude, mask):
    """LAMP scores of one kernel's surviving weights (pruned ones score 0): w^2 divided by
    the sum of w^2 over the surviving weights at least as large. The largest weight of
    every layer scores 1, so global pruning by these scores never empties a layer."""
    squared = np.where(mask > 0, magnitude, 0.0).reshape(-1).astype("float64") ** 2
    alive = np.flatnonzero(mask.reshape(-1) > 0)
    order = alive[np.argsort(squared[alive], kind="stable")]
    at_least = np.cumsum(squared[order][::-1])[::-1]  # sum over this weight and larger
    scores = np.zeros_like(squared)
    scores[order] = squared[order] / np.where(at_least > 0, at_least, 1.0)
    return scores.reshape(mask.shape)


def _prune_pooled(masks, scores, rate):
    """Global pruning: pool every surviving weight's score (|w| or LAMP) and remove the
    round(rate * alive) lowest."""
    paths = list(masks)
    alive = [np.flatnonzero(masks[p].reshape(-1) > 0) for p in paths]
    pooled = np.concatenate([scores[p].reshape(-1)[a] for p, a in zip(paths, alive)])
    n_remove = int(round(rate * pooled.size))
    owner = np.concatenate([np.full(a.size, i) for i, a in enumerate(alive)])
    position = np.concatenate(alive)
    new = {p: masks[p].copy().reshape(-1) for p in paths}
    for k in np.argsort(pooled, kind="stable")[:n_remove]:
        new[paths[owner[k]]][position[k]] = 0.0
    return {p: new[p].reshape(masks[p].shape) for p in paths}


def retrace_train_function(model):
    """Under JAX, replace the model's compiled train function by a new one, traced (with
    the masks' current values) at its first call; safe during fit, which looks the train
    function up at every step. TensorFlow and torch read the mask variables at every step."""
    if keras.backend.backend() == "jax" and getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)
