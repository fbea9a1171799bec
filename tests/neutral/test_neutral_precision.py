"""Mixed precision under the active backend: the encoder computes in float16 / bfloat16,
the InfoNCE heads and the loss stay float32, float16's loss scaling is applied and undone
by GreedyInfoMax's own train step, and the losses track float32's (docs/gpu.md)."""

import functools

import keras
import numpy as np
import pytest

from gim_zoo.models.gim import GreedyInfoMax
from gim_zoo.precision import policy_scope
from gim_zoo.registry import get
from tests.conftest import TINY_ENCODER
from tests.neutral.backend_tools import stripes, to_numpy

POLICIES = ("mixed_float16", "mixed_bfloat16")


def build(policy, optimizer):
    """The tiny GIM model under `policy` (same initial weights for every policy)."""
    with policy_scope(policy):
        keras.utils.set_random_seed(0)
        model = GreedyInfoMax(get("gim-fmnist-resnet").build_encoder(**TINY_ENCODER), seed=0)
        model.compile(optimizer)
    return model


@pytest.fixture(autouse=True)
def float32_afterwards():
    """Every test leaves Keras's global policy as it found it (float32)."""
    yield
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.parametrize("policy", POLICIES)
def test_encoder_in_low_precision_heads_and_losses_in_float32(policy, images):
    model = build(policy, keras.optimizers.Adam(1e-3))
    low = policy.split("_")[1]
    assert keras.config.dtype_policy().name == "float32"  # restored after the build
    assert model.encoder.gim_modules[0].compute_dtype == low
    assert all(v.dtype == "float32" for v in model.encoder.weights)
    assert all(h.compute_dtype == "float32" for h in model.heads)
    losses = model.module_losses(images, training=True)
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in losses.values())
    float16_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float16_scaled == (policy == "mixed_float16")


@functools.cache
def sgd_step(policy):
    """The change one SGD step makes to every trainable weight under `policy`, flattened
    ('' float32: computed once for both policies' tests)."""
    model = build(policy, keras.optimizers.SGD(0.1))
    before = [to_numpy(v).copy() for v in model.trainable_variables]
    model.fit(stripes(8), batch_size=8, epochs=1, verbose=0, shuffle=False)
    return np.concatenate([(to_numpy(v) - b).ravel()
                           for v, b in zip(model.trainable_variables, before)])


@pytest.mark.parametrize("policy", POLICIES)
def test_one_sgd_step_matches_float32(policy):
    """With plain SGD an update is the gradient itself, so a loss scale that was not
    applied (gradients underflow) or not undone (updates 2**15 times too big) shows."""
    reference, mixed = sgd_step(""), sgd_step(policy)
    assert np.linalg.norm(reference) > 0
    relative = np.linalg.norm(mixed - reference) / np.linalg.norm(reference)
    assert relative < 0.05, relative  # measured: float16 0.2%, bfloat16 0.6%


@functools.cache
def adam_fit(policy):
    """(losses, model) of 3 Adam epochs under `policy` (float32's computed once)."""
    model = build(policy, keras.optimizers.Adam(1e-2))
    return np.array(model.fit(stripes(), batch_size=8, epochs=3, verbose=0,
                              shuffle=False).history["loss"]), model


@pytest.mark.slow  # 6 steps under each policy (bfloat16 convolutions are slow on CPUs)
@pytest.mark.parametrize("policy", POLICIES)
def test_mixed_precision_losses_are_finite_and_track_float32(policy):
    (reference, _), (mixed, model) = adam_fit(""), adam_fit(policy)
    assert np.isfinite(mixed).all(), mixed
    assert reference[-1] < reference[0] - 0.05, reference  # the loss moves (by 0.08) ...
    # ... and mixed precision follows it (measured: within 1e-5 of the loss, relative)
    np.testing.assert_allclose(mixed, reference, rtol=2e-3)
    if policy == "mixed_float16":  # no overflow: the scale never had to drop
        assert float(to_numpy(model.optimizer.dynamic_scale)) == 2.0**15
