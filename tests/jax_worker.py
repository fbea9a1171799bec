"""The JAX half of tests/test_jax_backend.py: run as `KERAS_BACKEND=jax python jax_worker.py
OUT_DIR ENCODER_JSON` in a subprocess (the pytest process is TensorFlow's, and Keras fixes
its backend at import).

TensorFlow is blocked here (any import of it raises ImportError), as on the GPU machines
that have JAX but no TensorFlow: every check also shows that the code it runs does not need
TensorFlow. Each check returns plain numbers, written to OUT_DIR/results.json (arrays to
OUT_DIR/*.npz, weights to OUT_DIR/*.weights.h5); the assertions are made by the pytest
process, which compares them with TensorFlow. A failing check records its traceback and the
others still run.
"""

import importlib.abc
import json
import os
import sys
import time
import traceback
from pathlib import Path


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked in the JAX worker (no TensorFlow here)")


sys.meta_path.insert(0, _NoTensorFlow())
os.environ["KERAS_BACKEND"] = "jax"

import numpy as np  # noqa: E402

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def tiny_encoder(spec, seed=0):
    import keras

    from gim_zoo.registry import get

    keras.utils.set_random_seed(seed)
    return get("gim-fmnist-resnet").build_encoder(**spec)


def random_images(n=4, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, 28, 28, 1)).astype("float32")


def stripes(n=16):
    """Images that repeat one random row down the image: patches predict those below."""
    rows = np.random.default_rng(0).uniform(0, 255, size=(n, 1, 28, 1)).astype("float32")
    return np.repeat(rows, 28, axis=1)


def to_numpy(x):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


@check
def imports(out, spec):
    import keras

    import gim_zoo.callbacks  # noqa: F401
    import gim_zoo.models.audio  # noqa: F401
    import gim_zoo.models.gim  # noqa: F401
    import gim_zoo.models.probe  # noqa: F401
    import gim_zoo.models.resnet  # noqa: F401
    import gim_zoo.symmetry  # noqa: F401

    return {"backend": keras.backend.backend(), "tensorflow_loaded": "tensorflow" in sys.modules}


@check
def infonce(out, spec):
    """The loss and its gradients for fixed inputs and negatives (compared in pytest)."""
    import jax
    import keras

    from gim_zoo.models.infonce import InfoNCE

    rng = np.random.default_rng(1)
    B, G, C, K, N = 3, 7, 6, 5, 16
    z = rng.normal(size=(B, G, G, C)).astype("float32")
    c = rng.normal(size=(B, G, G, C)).astype("float32")
    predictors = rng.normal(scale=0.3, size=(K, C, C)).astype("float32")
    indices = [rng.integers(0, B * (G - k - 1) * G, size=(B, G - k - 1, G, N)).astype("int32")
               for k in range(1, K + 1)]
    head = InfoNCE(prediction_steps=K, negatives=N, skip=1)
    head.build(c.shape, z.shape)
    head.predictors.assign(predictors)

    def loss(p, context, targets):
        with keras.StatelessScope(state_mapping=[(head.predictors, p)]):
            return head(context, targets, negative_indices=indices)

    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(predictors, c, z)
    np.savez(out / "infonce.npz", z=z, c=c, predictors=predictors, loss=float(value),
             grad_predictors=np.asarray(grads[0]), grad_context=np.asarray(grads[1]),
             grad_targets=np.asarray(grads[2]),
             **{f"indices{k}": i for k, i in enumerate(indices)})
    return {"loss": float(value), "eager_loss": float(head(c, z, negative_indices=indices))}


@check
def fit(out, spec):
    """A tiny GreedyInfoMax fit lowers the loss; negatives are redrawn at every step."""
    import keras

    from gim_zoo.models.gim import GreedyInfoMax

    model = GreedyInfoMax(tiny_encoder(spec), seed=0)
    seeds = [v for v in model.non_trainable_variables if "seed_generator" in v.path]
    seeds_before = [to_numpy(v).tolist() for v in seeds]
    model.compile(keras.optimizers.Adam(3e-3))
    history = model.fit(stripes(), batch_size=16, epochs=15, verbose=0).history
    evaluated = model.evaluate(stripes(), batch_size=16, verbose=0, return_dict=True)
    return {"history": {k: [float(x) for x in v] for k, v in history.items()},
            "evaluate": {k: float(v) for k, v in evaluated.items()},
            "seed_generators": len(seeds), "heads": len(model.heads),
            "seeds_before": seeds_before, "seeds_after": [to_numpy(v).tolist() for v in seeds],
            "optimizer_steps": int(to_numpy(model.optimizer.iterations))}


@check
def isolation(out, spec):
    """grads[isolate][j][i]: norm of d(module j's loss)/d(module i's variables), by jax.grad."""
    import jax
    import keras

    from gim_zoo.models.gim import GreedyInfoMax

    images = random_images()
    model = GreedyInfoMax(tiny_encoder(spec), seed=0)
    trainable, fixed = model.trainable_variables, model.non_trainable_variables
    fixed_values = [v.value for v in fixed]
    n = model.encoder.num_modules
    owner = {id(v): i for i, m in enumerate(model.encoder.gim_modules)
             for v in m.trainable_variables}

    def module_losses(values):
        mapping = list(zip(trainable, values)) + list(zip(fixed, fixed_values))
        with keras.StatelessScope(state_mapping=mapping):
            losses = model.module_losses(images, training=True)
        return keras.ops.stack([losses[j] for j in range(n)])

    result = {}
    for isolate in (True, False):
        model.isolate = isolate  # read when traced
        jacobian = jax.jit(jax.jacrev(module_losses))([v.value for v in trainable])
        table = np.zeros((n, n))  # [loss j, module i]
        for v, g in zip(trainable, jacobian):
            if id(v) in owner:
                g = np.asarray(g).reshape(n, -1)
                table[:, owner[id(v)]] += np.sqrt(np.sum(np.square(g), axis=1))
        result["isolated" if isolate else "end_to_end"] = table.tolist()
    return result


@check
def train_module(out, spec):
    """fit with train_module=2 changes module 2 and its head only."""
    import keras

    from gim_zoo.models.gim import GreedyInfoMax

    encoder = tiny_encoder(spec)
    model = GreedyInfoMax(encoder, train_module=2, seed=0)
    model.compile(keras.optimizers.Adam(1e-2))
    groups = list(encoder.gim_modules) + list(model.heads)
    before = [[to_numpy(v).copy() for v in g.weights] for g in groups]
    history = model.fit(random_images(), batch_size=4, epochs=2, verbose=0).history
    after = [[to_numpy(v) for v in g.weights] for g in groups]
    changed = [any(not np.array_equal(a, b) for a, b in zip(x, y)) for x, y in zip(before, after)]
    n = encoder.num_modules
    moved_slots = sorted({s.path.split("/")[-1] for s in model.optimizer.variables
                          if np.any(to_numpy(s)) and "learning_rate" not in s.path
                          and "iteration" not in s.path})
    return {"modules_changed": changed[:n], "heads_changed": changed[n:],
            "history_keys": sorted(history), "loss": history["loss"],
            "moved_slots": moved_slots}


def mlp(layers, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((layers[0],))] + layers[1:])


@check
def rifle(out, spec):
    """As tests/test_rifle.py: re-inits after epochs 2, 4, 6 touch only the head."""
    import keras

    from gim_zoo.callbacks.rifle import RIFLE

    class Snapshots(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append({v.path: to_numpy(v) for v in self.model.weights})

    L = keras.layers
    model = mlp([6, L.Dense(16, activation="relu", name="backbone1"),
                 L.Dense(16, activation="relu", name="backbone2"),
                 L.Dense(3, activation="softmax", name="head")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")
    epochs = 8
    schedule = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=epochs * 4)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
    before, after = Snapshots(), Snapshots()
    callback = RIFLE("head", epochs, times=3, reset_optimizer_slots=True, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0,
                        callbacks=[before, callback, after]).history
    changed = [{path: bool(not np.array_equal(value, after.weights[e][path]))
                for path, value in before.weights[e].items()} for e in range(epochs)]
    head_kernel = model.get_layer("head").kernel.path
    return {"log": [{k: r[k] for k in ("after_epoch", "optimizer_step")} for r in callback.log],
            "changed": changed, "rifle_reinits": history["rifle_reinits"],
            "head_trained_after_last": bool(not np.array_equal(
                after.weights[5][head_kernel], after.weights[7][head_kernel])),
            "optimizer_steps": int(to_numpy(model.optimizer.iterations))}


@check
def lottery(out, spec):
    """Masked weights stay exactly zero through two fits of one compiled model (new masks
    between them), and a prune-and-rewind restores the start values and a fresh optimizer."""
    import keras

    from gim_zoo.callbacks.lottery import PruneWithRewind, PruningMasks

    L = keras.layers
    model = mlp([20, L.Dense(30, activation="relu"), L.Dense(25, activation="relu"),
                 L.Dense(4, activation="softmax")])
    masks = PruningMasks(model)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 20)).astype("float32")
    y = x[:, :4].argmax(-1).astype("int64")

    def violations():
        bad = alive_zero = 0
        for path, _, kernel in masks.kernels:
            mask, w = to_numpy(masks.masks[path]), to_numpy(kernel)
            bad += int(np.count_nonzero(w[mask == 0]))
            alive_zero += int(np.sum(w[mask == 1] == 0))
        return bad, alive_zero

    masks.assign({p: (rng.random(m.shape) > 0.5).astype("float32")
                  for p, m in masks.numpy().items()})
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    first = violations()
    masks.assign(masks.magnitude_prune())  # round 2, same compiled model
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    second = violations()

    rewind = PruneWithRewind(masks, rewind_step=0)
    start = {}

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            start.update({v.path: to_numpy(v).copy() for v in self.model.weights})

    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[rewind, Record()])
    remaining = masks.remaining()
    rewind.prune_and_rewind()
    worst = 0.0
    for v in model.weights:
        if v.path in masks.masks or v.path.endswith("mask"):
            continue
        want = start[v.path]
        mask = next((to_numpy(m) for p, m in masks.masks.items() if p == v.path), None)
        worst = max(worst, float(np.max(np.abs(to_numpy(v) - (want if mask is None
                                                                    else want * mask)))))
    for path, _, kernel in masks.kernels:
        want = start[path] * to_numpy(masks.masks[path])
        worst = max(worst, float(np.max(np.abs(to_numpy(kernel) - want))))
    optimizer_state = max(float(np.max(np.abs(to_numpy(v)))) for v in model.optimizer.variables
                          if "learning_rate" not in v.path)
    return {"first_fit": first, "second_fit": second, "remaining_before": remaining,
            "remaining_after": masks.remaining(), "rewind_max_error": worst,
            "optimizer_state_max": optimizer_state}


@check
def teleport(out, spec):
    """SymmetryTeleport inside fit, as tests/test_teleport.py (a GreedyInfoMax teleport is
    left out: JAX runs the orbit search eagerly, ~20 s of first-call compiles on 2 cores)."""
    import keras

    from gim_zoo.callbacks.teleport import SymmetryTeleport
    from gim_zoo.symmetry import Teleporter

    L = keras.layers
    model = mlp([8, L.Dense(16, activation="relu", name="d1"), L.Dense(16, name="d2"),
                 L.LeakyReLU(name="act2"), L.Dense(3, name="out")])
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")
    callback = SymmetryTeleport((x, y), at_steps=(0, 3), steps=4, lr=0.2, batch_size=16,
                                verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[callback]).history
    callback.teleport_now()
    slots = {s.name: to_numpy(s) for s in model.optimizer.variables}
    name = model.get_layer("d1").kernel.path.replace("/", "_")
    keys = ("step", "applied", "before", "after", "loss_before", "loss_after")
    result = {"log": [{k: r[k] for k in keys} for r in callback.log],
              "teleports": history["teleports"], "loss": history["loss"],
              "slots_zeroed": bool(not slots[f"{name}_momentum"].any()
                                   and not slots[f"{name}_velocity"].any())}
    # one more teleport: the network's function on other inputs is unchanged
    other = rng.normal(size=(50, 8)).astype("float32")
    outputs, weights = to_numpy(model(other)), [to_numpy(v) for v in model.trainable_variables]
    record = Teleporter(model).teleport((x[:12], y[:12]), steps=4, lr=0.3)
    result["direct"] = {k: record[k] for k in keys[1:]}
    result["direct"]["output_max_change"] = float(np.max(np.abs(to_numpy(model(other))
                                                                - outputs)))
    result["direct"]["weights_moved"] = bool(any(
        not np.allclose(a, to_numpy(b)) for a, b in zip(weights, model.trainable_variables)))
    return result


@check
def audio(out, spec):
    """The conv + GRU audio GIM trains under JAX: every module's loss drops (fixed negatives)."""
    import keras

    from gim_zoo.models.audio import AudioEncoder
    from gim_zoo.models.gim import GreedyInfoMax

    keras.utils.set_random_seed(0)
    model = GreedyInfoMax(AudioEncoder(channels=8, gru_units=8, crop_samples=1600),
                          prediction_steps=3, negatives=4, skip=0, seed=0)
    model.compile(keras.optimizers.Adam(3e-3))
    rng = np.random.default_rng(0)
    t = np.arange(1600) / 16000
    x = []
    for _ in range(8):
        f0 = rng.uniform(100, 400)
        x.append(0.5 * np.sin(2 * np.pi * (f0 + 300 * t) * t)
                 + 0.3 * np.sin(2 * np.pi * 2.5 * f0 * t) + 0.05 * rng.normal(size=1600))
    x = np.array(x, "float32")
    fixed = [np.random.default_rng(k).integers(0, 8 * (10 - k), size=(8, 10 - k, 1, 4))
             for k in range(1, 4)]
    before = {i: float(v) for i, v in model.module_losses(x, negative_indices=fixed).items()}
    model.fit(x, epochs=40, batch_size=8, verbose=0)
    after = {i: float(v) for i, v in model.module_losses(x, negative_indices=fixed).items()}
    return {"before": list(before.values()), "after": list(after.values())}


@check
def weights(out, spec):
    """Train the tiny encoder two steps under JAX, save its weights and its outputs."""
    import keras

    from gim_zoo.models.gim import GreedyInfoMax

    encoder = tiny_encoder(spec)
    model = GreedyInfoMax(encoder, seed=0)
    model.compile(keras.optimizers.Adam(1e-2))
    initial = [to_numpy(v).copy() for v in encoder.weights]
    model.fit(stripes(8), batch_size=4, epochs=1, verbose=0)
    trained = any(not np.array_equal(a, to_numpy(b)) for a, b in zip(initial, encoder.weights))
    encoder.save_weights(out / "encoder.weights.h5")
    images = random_images(6, seed=3)
    np.savez(out / "outputs.npz", images=images, grid=to_numpy(encoder(images)),
             pooled=to_numpy(encoder.feature_model(pool_to=3)(images)),
             module2=to_numpy(encoder.feature_model(2)(images)))
    return {"trained": trained}


def main(out, spec, only=None):
    out.mkdir(parents=True, exist_ok=True)
    try:
        import jax  # noqa: F401
        import keras  # noqa: F401
    except Exception as error:  # the pytest process skips with this reason
        (out / "results.json").write_text(json.dumps({"_unavailable": repr(error)}))
        return
    results = {}
    for name, fn in CHECKS.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        try:
            results[name] = {"ok": True, **fn(out, spec)}
        except Exception:  # recorded for the pytest process, which reports it
            results[name] = {"ok": False, "error": traceback.format_exc()}
        results[name]["seconds"] = round(time.perf_counter() - start, 2)
        print(f"{name}: {'ok' if results[name]['ok'] else 'FAILED'} "
              f"({results[name]['seconds']} s)", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3:])
