"""What the backend-neutral tests need that keras.ops does not have: gradients (each
backend differentiates its own way), and a folder to hand results to another backend;
plus the arrays several of them share (to_numpy, stripes).

Written here, apart from the library's own differentiation code, so that a test does not
check the library with the library.
"""

import os
from pathlib import Path

import keras
import numpy as np

HANDOFF_ENV = "GIM_ZOO_TEST_HANDOFF_DIR"


def _unsupported():
    import pytest

    pytest.skip(f"no gradient helper for the {keras.backend.backend()} backend")


def value_and_grad(fn, args):
    """(fn(*args), [d fn / d arg]) for a scalar fn of arrays, as NumPy; jitted under JAX."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        argnums = tuple(range(len(args)))
        value, grads = jax.jit(jax.value_and_grad(fn, argnums=argnums))(*args)
    elif backend == "tensorflow":
        import tensorflow as tf

        args = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(args)
            value = fn(*args)
        grads = tape.gradient(value, args)
    else:
        _unsupported()
    return float(value), [np.asarray(keras.ops.convert_to_numpy(g)) for g in grads]


def jacobian(fn, args):
    """[d fn / d arg] for a vector fn of a list of arrays: each (len(fn), *arg.shape), as
    NumPy; an arg fn does not depend on gets zeros."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        rows = jax.jit(jax.jacrev(fn))(list(args))
    elif backend == "tensorflow":
        import tensorflow as tf

        args = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(args)
            outputs = fn(args)
            parts = [outputs[j] for j in range(outputs.shape[0])]
        per_output = [tape.gradient(part, args, unconnected_gradients="zero")
                      for part in parts]
        rows = [tf.stack([grads[i] for grads in per_output]) for i in range(len(args))]
    else:
        _unsupported()
    return [np.asarray(keras.ops.convert_to_numpy(r)) for r in rows]


def handoff_dir(name):
    """A folder for results another backend's process checks (tests/test_jax_backend.py
    loads JAX-trained weights in TensorFlow), or None when nobody asked for them."""
    root = os.environ.get(HANDOFF_ENV)
    if not root:
        return None
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_numpy(x):
    if isinstance(x, keras.Variable):
        x = x.value
    return np.asarray(keras.ops.convert_to_numpy(x))


def stripes(n=16):
    """Images that repeat one random row down the image: patches predict those below."""
    rows = np.random.default_rng(0).uniform(0, 255, size=(n, 1, 28, 1)).astype("float32")
    return np.repeat(rows, 28, axis=1)
