"""Parameter symmetries: group actions on a pair of layers that leave the loss unchanged.

Teleportation (Zhao, Gower, Walters, Yu, ICLR 2024; the search is in search.py) moves the
weights along such an orbit. Two actions on a pair of layers joined by an activation sigma:
- `ChannelRescaling`: W1 -> W1 diag(a), b1 -> a * b1, W2 -> diag(1/a) W2 for a > 0 (one
  factor per channel). Exact for any input when sigma is positively homogeneous (ReLU,
  leaky ReLU): sigma(a z) = a sigma(z). Used on Dense/Conv pairs and inside our
  pre-activation ResNet blocks (reduce -> spatial -> expand, no normalisation layers).
- `DataDependentGL`: for Dense layers, z -> z g^T with g in GL(n), and W2 changed as
  little as possible so that sigma(z g^T) W2' = sigma(z) W2 on the teleport batch. Exact on
  that batch only, and only when the batch is smaller than the width n (sigma(z g^T) must
  have full row rank; at batch = n the new W2 is fixed by the batch alone, and the solve is
  typically ill-conditioned: a 784-32-32-10 MLP teleported on 32 examples diverged).
  The search never moves to a point where sigma(z g^T) has a condition number above
  `max_condition` (default 1e3).

    actions = actions_for(model, "rescale")   # one ChannelRescaling per layer pair
    rescalable_pairs(model)                   # [(first layer, second layer)]

Each action maps a group parameter t (identity() is no move) to new weight values in
keras.ops, `apply(values, t, context)`, so the search can differentiate through it.
"""

import keras
import numpy as np
from keras import ops

HOMOGENEOUS = ("relu", "leaky_relu")
GROUPS = ("rescale", "gl")  # per-channel rescaling, data-dependent GL(n)


# --- which layer pairs an action applies to ----------------------------------------------
def _activation_name(layer):
    if isinstance(layer, keras.layers.ReLU):
        plain = layer.max_value is None and not layer.threshold
        return "relu" if plain else "clipped relu"
    if isinstance(layer, keras.layers.LeakyReLU):
        return "leaky_relu"
    if isinstance(layer, keras.layers.Activation) or hasattr(layer, "activation"):
        return getattr(layer.activation, "__name__", str(layer.activation))
    return None


def _is_kernel_layer(layer):
    return isinstance(layer, keras.layers.Dense | keras.layers.Conv1D | keras.layers.Conv2D)


def rescalable_pairs(model):
    """[(first, second)] layer pairs whose joint per-channel rescaling is exact: consecutive
    Dense/Conv layers of a Sequential model joined by ReLU / leaky ReLU (as the first
    layer's activation or a layer in between), and the reduce -> spatial -> expand convs of
    every pre-activation bottleneck block (ReLU between them, no normalisation)."""
    from gim_zoo.models.resnet import PreActBottleneck

    pairs = []
    for layer in [model, *model._flatten_layers(include_self=False, recursive=True)]:
        if isinstance(layer, PreActBottleneck):
            pairs += [(layer.reduce, layer.spatial), (layer.spatial, layer.expand)]
        elif isinstance(layer, keras.Sequential):
            pairs += _sequential_pairs(layer.layers)
    return pairs


def _sequential_links(layers):
    """[(first, activation, second)]: consecutive Dense/Conv layers of the same type joined
    by ReLU / leaky ReLU, given as the first layer's `activation=` (activation None) or as a
    separate ReLU / LeakyReLU / Activation layer between them (that layer)."""
    links = []
    for i, first in enumerate(layers):
        if not _is_kernel_layer(first):
            continue
        rest = layers[i + 1:]
        if not rest:
            break
        act, between = _activation_name(first), None
        if act == "linear" and _activation_name(rest[0]) in HOMOGENEOUS \
                and not _is_kernel_layer(rest[0]):
            act, between, rest = _activation_name(rest[0]), rest[0], rest[1:]
        if act in HOMOGENEOUS and rest and type(rest[0]) is type(first):
            links.append((first, between, rest[0]))
    return links


def _sequential_pairs(layers):
    return [(first, second) for first, _, second in _sequential_links(layers)]


def gl_links(model):
    """[(first, activation layer or None, second)]: Dense -> Dense pairs of a Sequential
    model joined by ReLU / leaky ReLU, as `activation=` of the first or as a separate
    ReLU / LeakyReLU layer (the data-dependent GL(n) action needs the pre-activations)."""
    if not isinstance(model, keras.Sequential):
        raise ValueError("the data-dependent GL(n) action is implemented for Sequential "
                         f"MLPs; {model.name} is a {type(model).__name__}")
    return [link for link in _sequential_links(model.layers)
            if isinstance(link[0], keras.layers.Dense)]


def gl_pairs(model):
    return [(first, second) for first, _, second in gl_links(model)]


# --- the group actions --------------------------------------------------------------------
class ChannelRescaling:
    """a = exp(t) per output channel of `first`; exact for any input."""

    def __init__(self, first, second):
        self.first, self.second = first, second
        self.channels = int(first.kernel.shape[-1])
        if int(second.kernel.shape[-2]) != self.channels:
            raise ValueError(f"{first.name} -> {second.name}: channel counts differ")
        self.variables = [first.kernel, second.kernel] + \
            ([first.bias] if getattr(first, "bias", None) is not None else [])

    def identity(self):
        return ops.zeros((self.channels,))

    def apply(self, values, t, context=None):
        a = ops.exp(t)
        values[id(self.first.kernel)] = values[id(self.first.kernel)] * a
        if getattr(self.first, "bias", None) is not None:
            values[id(self.first.bias)] = values[id(self.first.bias)] * a
        values[id(self.second.kernel)] = values[id(self.second.kernel)] / ops.expand_dims(a, -1)


class DataDependentGL:
    """g = I + T on the first layer's pre-activations; W2 re-fitted on the teleport batch.

    `between`: the ReLU / LeakyReLU layer joining the pair, if the first layer does not
    apply the activation itself."""

    def __init__(self, first, second, between=None):
        self.first, self.second = first, second
        self.width = int(first.kernel.shape[-1])
        self.activation = first.activation if between is None else between.call
        self.bias = first.bias if first.use_bias else None
        self.variables = [first.kernel, second.kernel] + ([self.bias] if self.bias is not None
                                                          else [])

    def identity(self):
        return ops.zeros((self.width, self.width))

    def check_batch(self, size):
        if size >= self.width:
            raise ValueError(
                f"GL(n) teleportation of {self.first.name} needs a teleport batch smaller "
                f"than its width {self.width}; got {size} examples (at batch = width the "
                "re-fitted weights are fixed by the batch alone and the solve is "
                "ill-conditioned; use a smaller teleport batch, or group='rescale')")

    def condition(self, t, context):
        """2-norm condition number of sigma(z g^T), the matrix the re-fit inverts."""
        z = ops.convert_to_numpy(context[id(self)]).astype("float64")
        g = np.eye(self.width) + ops.convert_to_numpy(t).astype("float64")
        new = ops.convert_to_numpy(self.activation(ops.convert_to_tensor(
            (z @ g.T).astype("float32"))))
        return float(np.linalg.cond(new.astype("float64")))

    def apply(self, values, t, context):
        z = context[id(self)]  # (B, n) pre-activations on the batch, unchanged by the others
        self.check_batch(int(z.shape[0]))
        g_t = ops.transpose(ops.eye(self.width) + t)
        k1, k2 = id(self.first.kernel), id(self.second.kernel)
        values[k1] = ops.matmul(values[k1], g_t)
        if self.bias is not None:
            b1 = id(self.bias)
            values[b1] = ops.matmul(ops.expand_dims(values[b1], 0), g_t)[0]
        new = self.activation(ops.matmul(z, g_t))  # (B, n), full row rank for B < n
        old = self.activation(z)
        # The smallest change to W2 with new W2' = old W2 on the batch:
        # W2' = W2 + new^+ (old - new) W2, new^+ = new^T (new new^T)^-1 (B <= n). At g = I it
        # is W2 itself. (The paper's W2' = new^+ old W2 is also exact on the batch but, for
        # B < n, projects W2 onto the batch's activations even at g = I, which changes the
        # network on every other input.) A ridge of 1e-6 of the mean eigenvalue keeps the
        # solve finite if g drifts near singular; the search refuses such points anyway
        # (Teleporter.max_condition), where the ridge's effect on the loss is negligible.
        gram = ops.matmul(new, ops.transpose(new))
        gram = gram + 1e-6 * ops.trace(gram) / gram.shape[0] * ops.eye(gram.shape[0])
        residual = ops.matmul(old - new, values[k2])
        values[k2] = values[k2] + ops.matmul(ops.transpose(new),
                                             ops.linalg.solve(gram, residual))


def actions_for(model, group="rescale"):
    """One action of `group` (see GROUPS) per layer pair of `model` it applies to."""
    if group == "rescale":
        pairs = rescalable_pairs(model)
        if not pairs:
            raise ValueError(
                f"{model.name} has no layer pairs for the 'rescale' symmetry: it needs "
                "Dense/Conv layers joined by ReLU or leaky ReLU (activation= of the first, or "
                "a ReLU / LeakyReLU layer between them) in a Sequential model, or "
                "pre-activation bottleneck blocks")
        return [ChannelRescaling(a, b) for a, b in pairs]
    if group == "gl":
        links = gl_links(model)
        if not links:
            raise ValueError(
                f"{model.name} has no layer pairs for the 'gl' symmetry: it needs consecutive "
                "Dense layers of a Sequential model joined by ReLU or leaky ReLU (activation= "
                "of the first, or a ReLU / LeakyReLU layer between them)")
        return [DataDependentGL(a, b, between) for a, between, b in links]
    raise ValueError(f"group must be 'rescale' or 'gl', got {group!r}")
