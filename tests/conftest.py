"""Shared fixtures (tiny encoders so the whole suite runs in minutes on 2 CPU cores), and
which backend the suite runs under.

Keras fixes its backend when it is first imported, so the backend is chosen here, before
any test module imports keras: KERAS_BACKEND from the environment, TensorFlow when unset
(so a ~/.keras/keras.json does not change what the suite tests). Under any other backend
only tests/neutral/ is collected (the rest of the suite is TensorFlow's: tf.data, tf.distribute,
TFLite conversion, subprocesses), and TensorFlow imports are blocked, as on a machine that
has JAX but no TensorFlow: a neutral test that reaches TensorFlow fails instead of passing by
accident. `KERAS_BACKEND=jax pytest` is the JAX pass; tests/test_jax_backend.py runs it
from the ordinary (TensorFlow) suite.
"""

import importlib.abc
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One TensorFlow thread per process (this one, its training subprocesses): two xdist
# workers already fill the 2 cores, and more threads than cores spin and wait on each
# other (measured side by side: the suite 4-6% faster).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
BACKEND = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
NEUTRAL_DIR = Path(__file__).resolve().parent / "neutral"


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked: the tests run under KERAS_BACKEND={BACKEND}, "
                              "and backend-neutral code must not need TensorFlow")


if BACKEND != "tensorflow":
    sys.meta_path.insert(0, _NoTensorFlow())
if BACKEND == "jax":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # as CUDA_VISIBLE_DEVICES above
    # XLA's backend optimisations are most of the compile time of these tiny programs
    # (about 3x) and change nothing the tests look at.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()
# Tests never touch the network: the Hub client starts offline (tests that talk to the
# local stand-in switch it back on, see tests/hf_standin.py).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_TOKEN", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Fashion-MNIST geometry, with the smallest widths that still have 3 modules.
TINY_ENCODER = dict(stem_width=8, widths=(4, 4, 8), blocks=(1, 1, 1), expansion=2)
TINY_FLAGS = ["--stem_width=8", "--widths=4,4,8", "--blocks=1,1,1"]


@pytest.fixture
def tiny_encoder():
    import keras

    from gim_zoo.registry import get

    keras.utils.set_random_seed(0)
    return get("gim-fmnist-resnet").build_encoder(**TINY_ENCODER)


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(4, 28, 28, 1)).astype("float32")


@pytest.fixture
def standin(monkeypatch):
    """A local stand-in of the Hub's HTTP API (loopback only), the client pointed at it."""
    from tests.hf_standin import HubStandIn, isolate_client

    isolate_client(monkeypatch)
    with HubStandIn(token="hf_secret_test_token") as server:
        yield server


def pytest_ignore_collect(collection_path, config):
    """Under a backend other than TensorFlow, collect only tests/neutral/."""
    if BACKEND == "tensorflow" or collection_path.suffix != ".py":
        return None
    if collection_path.name.startswith("test_") and NEUTRAL_DIR not in collection_path.parents:
        return True
    return None


# The test files that take longest (summed test time on 2 cores, longest first). pytest-xdist
# (`--dist loadfile`) hands files to its workers in collection order, so starting with
# these keeps both workers busy to the end instead of leaving one on a long file alone.
LONGEST_FILES = ("test_gpu_ready.py", "test_faults.py", "test_own_data_chains.py",
                 "test_train_script.py", "test_jax_backend.py", "test_robustness.py",
                 "test_lottery_rounds.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: else as found
