"""The JAX pass: the backend-neutral tests (tests/neutral/) run again under
KERAS_BACKEND=jax, by pytest in a subprocess (Keras fixes its backend at import, and this
process is TensorFlow's), with TensorFlow imports blocked there (tests/conftest.py); then
weights that pass trained under JAX are loaded here, in TensorFlow, and exported to TFLite.

Run the pass by hand with `KERAS_BACKEND=jax python -m pytest -q`. Skipped when jax is not
installed (the `test` extra installs jax[cpu]).
"""

import importlib.util
import os
import re
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests import subprocs
from tests.conftest import TINY_ENCODER
from tests.neutral.backend_tools import HANDOFF_ENV

pytestmark = pytest.mark.slow  # a second pytest process, compiling under JAX

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def jax_pass(tmp_path_factory):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (pip install -e '.[test]' installs jax[cpu])")
    handoff = tmp_path_factory.mktemp("jax_handoff")
    env = {**os.environ, "KERAS_BACKEND": "jax", HANDOFF_ENV: str(handoff)}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
            "tests/neutral"]  # -n 0: one process (this pass already runs beside the suite)
    proc = subprocs.run(args, env=env, cwd=ROOT, check=False)
    return args, proc, handoff


def test_backend_neutral_tests_pass_under_jax(jax_pass):
    args, proc, _ = jax_pass
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    others = re.findall(r"\d+ (failed|errors?|skipped|xfailed|xpassed|deselected)", summary)
    if proc.returncode != 0 or not re.match(r"\d+ passed", summary) or others:
        # every test passes under JAX: a skip would hide an untested part
        raise subprocs.failure(args, f"the JAX pass exited with status {proc.returncode} "
                               f"({summary!r})", stdout=proc.stdout, stderr=proc.stderr)


def test_jax_trained_weights_load_in_tensorflow_and_export_to_tflite(jax_pass, tmp_path):
    from gim_zoo.exporting import TFLiteModel, export_tflite
    from gim_zoo.registry import get

    folder = jax_pass[2] / "trained_weights"
    if not (folder / "outputs.npz").exists():
        pytest.fail(f"the JAX pass handed over no weights in {folder} "
                    "(see test_backend_neutral_tests_pass_under_jax)")
    with np.load(folder / "outputs.npz") as saved:
        jax_outputs = dict(saved)
    images = jax_outputs["images"]
    keras.utils.set_random_seed(1)
    encoder = get("gim-fmnist-resnet").build_encoder(**TINY_ENCODER)
    assert not np.allclose(np.asarray(encoder(images)), jax_outputs["grid"], atol=1e-3)
    encoder.load_weights(folder / "encoder.weights.h5")
    np.testing.assert_allclose(np.asarray(encoder(images)), jax_outputs["grid"], atol=1e-5)
    pooled = encoder.feature_model(pool_to=3)
    np.testing.assert_allclose(np.asarray(pooled(images)), jax_outputs["pooled"], atol=1e-5)
    np.testing.assert_allclose(np.asarray(encoder.feature_model(2)(images)),
                               jax_outputs["module2"], atol=1e-5)
    lite = TFLiteModel(export_tflite(pooled, tmp_path / "jax_trained.tflite"))
    np.testing.assert_allclose(lite(images), jax_outputs["pooled"], atol=1e-5)
