"""The JAX backend: GreedyInfoMax's train step, InfoNCE and the callbacks under
KERAS_BACKEND=jax, and JAX-trained weights loaded (and exported to TFLite) by TensorFlow.

Keras fixes its backend at import and this process is TensorFlow's, so the JAX side runs
once in a subprocess (tests/jax_worker.py, with TensorFlow blocked there); each test below
checks the numbers it wrote, several against TensorFlow computing the same thing here.
Skipped when jax is not installed (the `test` extra installs jax[cpu]).
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests import subprocs
from tests.conftest import TINY_ENCODER

pytestmark = pytest.mark.slow  # one long JAX worker process

WORKER = Path(__file__).with_name("jax_worker.py")


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install -e '.[test]' installs jax[cpu])")
    out = tmp_path_factory.mktemp("jax")
    # XLA's backend optimisations cost most of the compile time of these tiny programs
    # (about 3x) and change nothing that the checks look at
    xla_flags = " ".join(filter(None, [os.environ.get("XLA_FLAGS"),
                                       "--xla_backend_optimization_level=0"]))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "CUDA_VISIBLE_DEVICES": "", "XLA_FLAGS": xla_flags}
    spec = json.dumps({k: list(v) if isinstance(v, tuple) else v
                       for k, v in TINY_ENCODER.items()})
    args = [sys.executable, str(WORKER), str(out), spec]
    proc = subprocs.run(args, env=env, cwd=WORKER.parent.parent)  # fails on timeout or exit
    results_path = out / "results.json"
    if not results_path.exists():
        raise subprocs.failure(args, f"the JAX worker wrote no {results_path}",
                               stdout=proc.stdout, stderr=proc.stderr)
    results = json.loads(results_path.read_text())
    if "_unavailable" in results:
        pytest.skip(f"jax is installed but not importable: {results['_unavailable']}")
    return out, results


def result(jax_run, name):
    found = jax_run[1][name]
    assert found["ok"], f"JAX check {name!r} failed:\n{found['error']}"
    return found


def test_models_callbacks_and_symmetry_import_without_tensorflow(jax_run):
    found = result(jax_run, "imports")
    assert found["backend"] == "jax" and found["tensorflow_loaded"] is False


def test_infonce_and_its_gradients_match_tensorflow_and_numpy(jax_run):
    import tensorflow as tf

    from gim_zoo.models.infonce import InfoNCE
    from tests.test_infonce import numpy_infonce

    found = result(jax_run, "infonce")
    with np.load(jax_run[0] / "infonce.npz") as saved:
        data = dict(saved)
    indices = [data[f"indices{k}"] for k in range(5)]
    z, c, predictors = data["z"], data["c"], data["predictors"]
    want = numpy_infonce(z, c, predictors, indices)
    np.testing.assert_allclose(found["loss"], want, rtol=1e-5)
    np.testing.assert_allclose(found["eager_loss"], want, rtol=1e-5)

    head = InfoNCE(prediction_steps=5, negatives=16, skip=1)
    head.build(c.shape, z.shape)
    head.predictors.assign(predictors)
    c_t, z_t = tf.constant(c), tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch([c_t, z_t])
        loss = head(c_t, z_t, negative_indices=indices)
    grads = tape.gradient(loss, [head.predictors.value, c_t, z_t])
    np.testing.assert_allclose(float(loss), found["loss"], rtol=1e-5)
    for name, grad in zip(("grad_predictors", "grad_context", "grad_targets"), grads):
        assert np.abs(data[name]).max() > 1e-3, name  # not a vacuous comparison
        np.testing.assert_allclose(data[name], np.asarray(grad), rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_fit_lowers_the_loss_and_draws_new_negatives_every_step(jax_run):
    found = result(jax_run, "fit")
    history = found["history"]
    assert set(history) == {"loss", "module1_loss", "module2_loss", "module3_loss"}
    assert history["loss"][-1] < history["loss"][0] - 0.1, history["loss"]
    for i in (1, 2, 3):
        assert history[f"module{i}_loss"][-1] < history[f"module{i}_loss"][0]
    assert found["optimizer_steps"] == 15
    # each head's seed generator is non-trainable model state, threaded through the steps
    assert found["seed_generators"] == found["heads"] == 3
    assert all(a != b for a, b in zip(found["seeds_before"], found["seeds_after"]))
    assert set(found["evaluate"]) == set(history)
    assert np.isfinite(list(found["evaluate"].values())).all()


def test_gradients_do_not_cross_modules(jax_run):
    found = result(jax_run, "isolation")
    isolated, end_to_end = np.array(found["isolated"]), np.array(found["end_to_end"])
    # [loss j, module i]: each loss reaches its own module only ...
    assert np.all(np.diag(isolated) > 0)
    assert np.all(isolated[~np.eye(3, dtype=bool)] == 0.0)
    # ... where without stop_gradient later losses reach every earlier module
    assert np.all(end_to_end[np.tril_indices(3, -1)] > 0)
    assert np.all(end_to_end[np.triu_indices(3, 1)] == 0.0)


def test_train_module_updates_only_that_module_and_its_head(jax_run):
    found = result(jax_run, "train_module")
    assert found["modules_changed"] == [False, True, False]
    assert found["heads_changed"] == [False, True, False]
    assert found["history_keys"] == ["loss", "module2_loss"]
    assert found["moved_slots"] and all("module2" in s or "infonce2" in s
                                        for s in found["moved_slots"])


def test_rifle_reinitialises_only_the_head_at_the_planned_epochs(jax_run):
    found = result(jax_run, "rifle")
    assert found["log"] == [{"after_epoch": 2, "optimizer_step": 8},
                            {"after_epoch": 4, "optimizer_step": 16},
                            {"after_epoch": 6, "optimizer_step": 24}]
    for epoch, changed in enumerate(found["changed"]):
        for path, moved in changed.items():
            assert moved == ("/head/" in f"/{path}" and epoch + 1 in (2, 4, 6)), (epoch, path)
    assert found["rifle_reinits"] == [0, 1, 1, 2, 2, 3, 3, 3]
    assert found["head_trained_after_last"] and found["optimizer_steps"] == 32


def test_lottery_masks_hold_across_fits_and_rewind_is_exact(jax_run):
    found = result(jax_run, "lottery")
    # (masked weights that are not zero, unmasked weights that are exactly zero)
    assert found["first_fit"] == [0, 0]
    assert found["second_fit"] == [0, 0]  # new masks reach the already-compiled model
    assert found["remaining_after"] < found["remaining_before"]
    assert found["rewind_max_error"] == 0.0 and found["optimizer_state_max"] == 0.0


def test_teleport_keeps_the_loss_and_raises_the_gradient_norm(jax_run):
    found = result(jax_run, "teleport")
    assert [r["step"] for r in found["log"]] == [0, 3]
    for record in found["log"] + [found["direct"]]:
        assert record["applied"]
        assert abs(record["loss_after"] - record["loss_before"]) <= 1e-5 * record["loss_before"]
        assert record["after"] >= record["before"]
    assert found["direct"]["after"] > 1.05 * found["direct"]["before"]
    assert found["direct"]["weights_moved"] and found["direct"]["output_max_change"] < 1e-4
    assert found["teleports"] == [2.0, 2.0] and np.isfinite(found["loss"]).all()
    assert found["slots_zeroed"]


def test_audio_gim_lowers_every_module_loss(jax_run):
    found = result(jax_run, "audio")
    assert len(found["before"]) == 6
    assert all(a < b for a, b in zip(found["after"], found["before"])), found


def test_jax_trained_weights_load_in_tensorflow_and_export_to_tflite(jax_run, tmp_path):
    from gim_zoo.exporting import TFLiteModel, export_tflite
    from gim_zoo.registry import get

    assert result(jax_run, "weights")["trained"]
    with np.load(jax_run[0] / "outputs.npz") as saved:
        jax_outputs = dict(saved)
    images = jax_outputs["images"]
    keras.utils.set_random_seed(1)
    encoder = get("gim-fmnist-resnet").build_encoder(**TINY_ENCODER)
    assert not np.allclose(np.asarray(encoder(images)), jax_outputs["grid"], atol=1e-3)
    encoder.load_weights(jax_run[0] / "encoder.weights.h5")
    np.testing.assert_allclose(np.asarray(encoder(images)), jax_outputs["grid"], atol=1e-5)
    pooled = encoder.feature_model(pool_to=3)
    np.testing.assert_allclose(np.asarray(pooled(images)), jax_outputs["pooled"], atol=1e-5)
    np.testing.assert_allclose(np.asarray(encoder.feature_model(2)(images)),
                               jax_outputs["module2"], atol=1e-5)
    lite = TFLiteModel(export_tflite(pooled, tmp_path / "jax_trained.tflite"))
    np.testing.assert_allclose(lite(images), jax_outputs["pooled"], atol=1e-5)
