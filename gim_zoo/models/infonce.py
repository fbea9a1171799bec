"""InfoNCE (CPC) loss over a grid of patch embeddings, as Greedy InfoMax uses it.

For k = 1..K a bias-free linear map W_k transforms the target embeddings; the context at
grid row i scores the target k + skip rows below it (same column) against N negatives
drawn uniformly, with replacement, from all transformed targets of that k in the batch
(every image, every position). Softmax over 1 + N raw scores (no normalisation, no
temperature), cross-entropy with the positive, mean over positions, summed over k and
divided by K. Matches the official GIM code's semantics (Loewe et al., NeurIPS 2019).

The head is a float32 layer whatever the global dtype policy: under mixed precision
its inputs (float16 / bfloat16 module outputs) are cast up, so the predictors, scores,
log-softmax and loss are float32 (raw InfoNCE scores of wide modules exceed float16's
range; see gim_zoo.precision).

`directions` adds predictions upward and sideways (CPC v2, Henaff et al., ICML 2020,
predicts in four directions): each direction has its own K predictors, the grid is
flipped or transposed so that it becomes a downward prediction, and the loss is the mean
over directions and steps. Only for contexts that do not look ahead (GIM's modules, not
CPC's row-causal autoregressor, whose context already saw the rows above).
"""

import keras
from keras import ops


def info_nce_from_scores(context, transformed_targets, negative_indices):
    """Loss for one prediction step, at a cost linear in the batch.

    context: (B, R, W, C) rows that make predictions.
    transformed_targets: (B, R, W, C) the matching targets already multiplied by W_k.
    negative_indices: (B, R, W, N) integer rows of the flattened (B*R*W, C) targets.

    Gathers only the N sampled negatives of each context, (B, R, W, N, C), and scores
    them: O(B*N) work. Scoring every context against every target first (one (P, P)
    matmul, P = B*R*W) is quadratic in the batch and was slower even at batch 32
    (benchmarks/throughput.py, its all-pairs row).
    """
    channels = transformed_targets.shape[-1]
    positive = ops.sum(context * transformed_targets, axis=-1, keepdims=True)  # (B,R,W,1)
    keys = ops.reshape(transformed_targets, (-1, channels))
    negatives = ops.take(keys, negative_indices, axis=0)  # (B,R,W,N,C)
    negative = ops.einsum("brwc,brwnc->brwn", context, negatives)
    logits = ops.concatenate([positive, ops.cast(negative, positive.dtype)], axis=-1)
    return -ops.mean(ops.log_softmax(logits, axis=-1)[..., 0])


DIRECTIONS = ("down", "up", "right", "left")


def oriented(grid, direction):
    """`grid` (B, R, W, C) turned so that predicting `direction` is predicting downward."""
    if direction in ("right", "left"):
        grid = ops.transpose(grid, (0, 2, 1, 3))
    return ops.flip(grid, axis=1) if direction in ("up", "left") else grid


@keras.saving.register_keras_serializable(package="gim_zoo")
class InfoNCE(keras.layers.Layer):
    """InfoNCE head of one module: owns the K predictors W_k and the negative sampler.

    Call with `(context, targets)`, both (B, G, G, C); returns the scalar loss.
    `negative_indices` (a list of K integer arrays per direction, in `directions` order)
    fixes the negatives, for tests.
    """

    def __init__(self, prediction_steps=5, negatives=16, skip=1, seed=None,
                 directions=("down",), **kwargs):
        kwargs["dtype"] = "float32"  # scores and loss in float32 under mixed precision
        super().__init__(**kwargs)
        self.prediction_steps = int(prediction_steps)
        self.negatives = int(negatives)
        self.skip = int(skip)
        self.seed = seed
        self.directions = tuple(directions)
        unknown = [d for d in self.directions if d not in DIRECTIONS]
        if unknown or not self.directions or len(set(self.directions)) < len(self.directions):
            raise ValueError(f"directions must be distinct names from {DIRECTIONS}, got "
                             f"{directions!r}")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, context_shape, targets_shape=None):
        targets_shape = targets_shape or context_shape
        sideways = any(d in ("right", "left") for d in self.directions)
        for axis, name in ((1, "row"), (2, "column")) if sideways else ((1, "row"),):
            size = targets_shape[axis]
            if self.prediction_steps + self.skip >= size:
                raise ValueError(
                    f"a {size}-{name} grid cannot predict {self.prediction_steps} steps with "
                    f"skip {self.skip}: need prediction_steps + skip < {name}s"
                )
        # (directions * K, target channels, context channels); one direction: (K, T, C)
        self.predictors = self.add_weight(
            shape=(len(self.directions) * self.prediction_steps, targets_shape[-1],
                   context_shape[-1]),
            initializer="glorot_uniform",
            name="predictors",
        )

    def sample_negatives(self, batch, rows, cols):
        """Uniform indices (with replacement) into all transformed targets of one step."""
        return keras.random.randint(
            (batch, rows, cols, self.negatives),
            0,
            batch * rows * cols,
            seed=self.seed_generator,
            dtype="int32",
        )

    def call(self, context, targets, negative_indices=None):
        batch = ops.shape(targets)[0]
        total = 0.0
        for d, direction in enumerate(self.directions):
            turned_context = oriented(context, direction)
            turned_targets = oriented(targets, direction)
            rows, cols = turned_targets.shape[1], turned_targets.shape[2]
            for k in range(1, self.prediction_steps + 1):
                step = d * self.prediction_steps + k - 1
                shift = k + self.skip
                future = turned_targets[:, shift:]
                transformed = ops.einsum("brwt,tc->brwc", future, self.predictors[step])
                present = turned_context[:, : rows - shift]
                if negative_indices is None:
                    indices = self.sample_negatives(batch, rows - shift, cols)
                else:
                    indices = negative_indices[step]
                total = total + info_nce_from_scores(present, transformed, indices)
        return total / (self.prediction_steps * len(self.directions))

    def get_config(self):
        return {
            **super().get_config(),
            "prediction_steps": self.prediction_steps,
            "negatives": self.negatives,
            "skip": self.skip,
            "seed": self.seed,
            "directions": list(self.directions),
        }
