"""InfoNCE's value and gradients under the active backend, against NumPy: the loop
reference of tests/test_infonce.py for the value, and gradients worked out by hand
(checked against finite differences of that reference) for every element."""

import keras
import numpy as np

from gim_zoo.models.infonce import InfoNCE
from tests.neutral.backend_tools import value_and_grad
from tests.test_infonce import numpy_infonce


def numpy_infonce_and_gradients(z, c, predictors, negative_indices, skip=1):
    """(loss, d/d predictors, d/d c, d/d z) in float64. Each score is c . (z W_k), linear in
    c, z and W_k, and d loss / d scores = (softmax(scores) - onehot(positive)) / (contexts*K)."""
    z, c, W = (np.asarray(a, np.float64) for a in (z, c, predictors))
    b, g, w, ch = z.shape
    K = W.shape[0]
    loss, dW, dc, dz = 0.0, np.zeros_like(W), np.zeros_like(c), np.zeros_like(z)
    for k in range(1, K + 1):
        shift = k + skip
        rows = g - shift
        sources = z[:, shift:].reshape(-1, ch)  # what a candidate index names
        transformed = sources @ W[k - 1]
        positives = np.arange(b * rows * w).reshape(b, rows, w, 1)
        candidates = np.concatenate([positives, np.asarray(negative_indices[k - 1])], -1)
        context = c[:, :rows]
        scores = np.einsum("brwnc,brwc->brwn", transformed[candidates], context)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        loss += -np.mean(np.log(p[..., 0])) / K
        d_scores = p
        d_scores[..., 0] -= 1
        d_scores /= positives.size * K
        dc[:, :rows] += np.einsum("brwn,brwnc->brwc", d_scores, transformed[candidates])
        dW[k - 1] += np.einsum("brwn,brwna,brwc->ac", d_scores, sources[candidates], context)
        d_sources = np.zeros_like(sources)
        np.add.at(d_sources, candidates,
                  d_scores[..., None] * (context @ W[k - 1].T)[..., None, :])
        dz[:, shift:] += d_sources.reshape(b, rows, w, ch)
    return loss, dW, dc, dz


def problem():
    rng = np.random.default_rng(1)
    B, G, C, K, N = 3, 7, 6, 5, 16
    z = rng.normal(size=(B, G, G, C)).astype("float32")
    c = rng.normal(size=(B, G, G, C)).astype("float32")
    predictors = rng.normal(scale=0.3, size=(K, C, C)).astype("float32")
    indices = [rng.integers(0, B * (G - k - 1) * G, size=(B, G - k - 1, G, N)).astype("int32")
               for k in range(1, K + 1)]
    return z, c, predictors, indices


def test_hand_gradients_match_finite_differences_of_the_loop_reference():
    z, c, predictors, indices = problem()
    args = [a.astype(np.float64) for a in (predictors, c, z)]
    loss, *grads = numpy_infonce_and_gradients(args[2], args[1], args[0], indices)
    np.testing.assert_allclose(loss, numpy_infonce(args[2], args[1], args[0], indices),
                               rtol=1e-12)
    rng, eps = np.random.default_rng(2), 1e-5
    for i, grad in enumerate(grads):
        for _ in range(2):
            direction = rng.normal(size=grad.shape)
            moved = [[a + s * eps * direction if j == i else a for j, a in enumerate(args)]
                     for s in (1, -1)]
            up, down = (numpy_infonce(m[2], m[1], m[0], indices) for m in moved)
            np.testing.assert_allclose((up - down) / (2 * eps), np.sum(grad * direction),
                                       rtol=1e-6)


def test_value_and_gradients_match_numpy():
    z, c, predictors, indices = problem()
    head = InfoNCE(prediction_steps=5, negatives=16, skip=1)
    head.build(c.shape, z.shape)
    head.predictors.assign(predictors)

    def loss(p, context, targets):
        with keras.StatelessScope(state_mapping=[(head.predictors, p)]):
            return head(context, targets, negative_indices=indices)

    value, grads = value_and_grad(loss, [predictors, c, z])
    want, *want_grads = numpy_infonce_and_gradients(z, c, predictors, indices)
    np.testing.assert_allclose(value, want, rtol=1e-5)
    eager = float(keras.ops.convert_to_numpy(head(c, z, negative_indices=indices)))
    np.testing.assert_allclose(eager, want, rtol=1e-5)
    for name, got, expected in zip(("predictors", "context", "targets"), grads, want_grads):
        assert np.abs(expected).max() > 1e-3, name  # not a vacuous comparison
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6, err_msg=name)
