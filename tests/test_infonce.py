"""InfoNCE against a plain NumPy implementation written from the paper's definition."""

import numpy as np
import pytest

from gim_zoo.models.infonce import InfoNCE


def numpy_infonce(z, c, predictors, negative_indices, skip=1):
    """Loop-for-loop reference: score = c_t . (W_k z_{t+k+skip}), softmax over 1 + N."""
    b, g, w, ch = z.shape
    K = predictors.shape[0]
    total = 0.0
    for k in range(1, K + 1):
        shift = k + skip
        rows = g - shift
        transformed = z[:, shift:] @ predictors[k - 1]  # (B, rows, W, C)
        flat = transformed.reshape(-1, ch)
        losses = []
        for i in range(b):
            for r in range(rows):
                for col in range(w):
                    ctx = c[i, r, col]
                    scores = [ctx @ transformed[i, r, col]]
                    scores += [ctx @ flat[j] for j in negative_indices[k - 1][i, r, col]]
                    scores = np.array(scores, dtype=np.float64)
                    m = scores.max()
                    log_softmax0 = scores[0] - (m + np.log(np.exp(scores - m).sum()))
                    losses.append(-log_softmax0)
        total += np.mean(losses)
    return total / K


@pytest.mark.parametrize("same_context", [True, False])
def test_matches_numpy_reference(same_context):
    rng = np.random.default_rng(1)
    B, G, C, K, N = 3, 7, 6, 5, 16
    z = rng.normal(size=(B, G, G, C)).astype("float32")
    c = z if same_context else rng.normal(size=(B, G, G, C)).astype("float32")
    head = InfoNCE(prediction_steps=K, negatives=N, skip=1)
    head.build(c.shape, z.shape)
    predictors = rng.normal(scale=0.3, size=(K, C, C)).astype("float32")
    head.predictors.assign(predictors)
    indices = [rng.integers(0, B * (G - k - 1) * G, size=(B, G - k - 1, G, N)).astype("int32")
               for k in range(1, K + 1)]
    got = float(head(c, z, negative_indices=indices))
    want = numpy_infonce(z, c, predictors, indices)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_sampled_negatives_stay_in_range_and_loss_near_log_n_plus_1_at_init():
    rng = np.random.default_rng(2)
    z = rng.normal(scale=1e-3, size=(8, 7, 7, 4)).astype("float32")
    head = InfoNCE(prediction_steps=5, negatives=16, seed=0)
    head.build(z.shape, z.shape)
    idx = np.asarray(head.sample_negatives(8, 5, 7))
    assert idx.shape == (8, 5, 7, 16) and idx.min() >= 0 and idx.max() < 8 * 5 * 7
    # Near-zero embeddings make every score ~0: the loss is log(1 + N).
    np.testing.assert_allclose(float(head(z, z)), np.log(17), rtol=1e-3)


def test_grid_too_small_for_prediction_steps():
    head = InfoNCE(prediction_steps=5, skip=1)
    with pytest.raises(ValueError, match="cannot predict 5 steps"):
        head.build((None, 6, 6, 4), (None, 6, 6, 4))


def test_gathered_negatives_match_all_pairs_in_value_and_gradients():
    import tensorflow as tf

    from benchmarks.throughput import all_pairs_info_nce
    from gim_zoo.models.infonce import info_nce_from_scores

    rng = np.random.default_rng(3)
    B, R, W, C, N = 4, 3, 7, 8, 16
    context = tf.constant(rng.normal(size=(B, R, W, C)).astype("float32"))
    targets = tf.constant(rng.normal(size=(B, R, W, C)).astype("float32"))
    # Repeated indices on purpose: the gather's gradient must add them up.
    indices = tf.constant(rng.integers(0, 5, size=(B, R, W, N)).astype("int32"))
    results = []
    for fn in (info_nce_from_scores, all_pairs_info_nce):  # now vs the earlier O(B^2) loss
        with tf.GradientTape() as tape:
            tape.watch([context, targets])
            loss = fn(context, targets, indices)
        results.append((float(loss), *[g.numpy() for g in tape.gradient(loss,
                                                                          [context, targets])]))
    (v1, gc1, gt1), (v2, gc2, gt2) = results
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    np.testing.assert_allclose(gc1, gc2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gt1, gt2, rtol=1e-5, atol=1e-6)
    assert np.abs(gt1).sum() > 0


NP_ORIENTED = {  # what each direction predicts, written independently of infonce.oriented
    "down": lambda g: g,
    "up": lambda g: g[:, ::-1],
    "right": lambda g: np.transpose(g, (0, 2, 1, 3)),
    "left": lambda g: np.transpose(g, (0, 2, 1, 3))[:, ::-1],
}


def test_directions_are_the_mean_of_turned_downward_predictions():
    """Four directions (CPC v2): each its own K predictors; the loss is the mean over
    directions of the reference loss on the grid turned so the direction points down.
    A non-square grid checks that rows and columns are not mixed up."""
    rng = np.random.default_rng(3)
    B, R, W, C, K, N = 2, 8, 7, 5, 2, 6
    directions = ("down", "up", "right", "left")
    z = rng.normal(size=(B, R, W, C)).astype("float32")
    c = rng.normal(size=(B, R, W, C)).astype("float32")
    head = InfoNCE(prediction_steps=K, negatives=N, skip=1, directions=directions)
    head.build(c.shape, z.shape)
    predictors = rng.normal(scale=0.3, size=(4 * K, C, C)).astype("float32")
    head.predictors.assign(predictors)
    indices, want = [], []
    for d, direction in enumerate(directions):
        rows, cols = NP_ORIENTED[direction](z).shape[1:3]
        own = [rng.integers(0, B * (rows - k - 1) * cols, size=(B, rows - k - 1, cols, N))
               .astype("int32") for k in range(1, K + 1)]
        indices += own
        want.append(numpy_infonce(NP_ORIENTED[direction](z), NP_ORIENTED[direction](c),
                                  predictors[d * K:(d + 1) * K], own))
    got = float(head(c, z, negative_indices=indices))
    np.testing.assert_allclose(got, np.mean(want), rtol=1e-5)
    # the default is the paper's: downward only, K predictors
    down = InfoNCE(prediction_steps=K, negatives=N, skip=1)
    down.build(c.shape, z.shape)
    assert tuple(down.predictors.shape) == (K, C, C)
    down.predictors.assign(predictors[:K])
    np.testing.assert_allclose(float(down(c, z, negative_indices=indices[:K])), want[0],
                               rtol=1e-5)
    again = InfoNCE.from_config(head.get_config())
    assert again.directions == directions


def test_directions_are_checked():
    with pytest.raises(ValueError, match="directions must be distinct names"):
        InfoNCE(directions=("down", "sideways"))
    with pytest.raises(ValueError, match="directions must be distinct names"):
        InfoNCE(directions=("up", "up"))
    head = InfoNCE(prediction_steps=5, skip=1, directions=("down", "right"))
    with pytest.raises(ValueError, match="1-column grid cannot predict 5 steps"):
        head.build((None, 20, 1, 4), (None, 20, 1, 4))  # a time series has no sideways


def test_directions_need_contexts_that_do_not_look_ahead():
    from gim_zoo.models.gim import GreedyInfoMax
    from gim_zoo.registry import get

    encoder = get("gim-fmnist-resnet").build_encoder(widths=(4, 4, 4))
    with pytest.raises(ValueError, match="not with an autoregressor"):
        GreedyInfoMax(encoder, isolate=False, loss_modules="last", autoregressor=True,
                      directions=("down", "up"))
    model = GreedyInfoMax(encoder, directions=("down", "up", "right", "left"))
    assert all(head.directions == ("down", "up", "right", "left") for head in model.heads)
    assert model.get_config()["directions"] == ["down", "up", "right", "left"]
