"""Shared fixtures: tiny encoders so the whole suite runs in minutes on 2 CPU cores."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
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
