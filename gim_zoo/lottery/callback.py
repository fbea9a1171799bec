"""PruneWithRewind: iterative magnitude pruning with rewinding, one `fit` per round.

Frankle & Carbin (ICLR 2019) and late rewinding (Frankle et al. 2019): train, remove the
smallest-magnitude surviving weights, reset the survivors (and every other unpruned
variable) to their values at the rewind point, train again with a fresh optimizer.

    masks = PruningMasks(model)
    model.compile(keras.optimizers.Adam(1.2e-3), "sparse_categorical_crossentropy")
    rewind = PruneWithRewind(masks, rewind_step=0, prune_at_end=True)
    for _ in range(5):  # each fit: train, then prune 20% (output layer 10%) and rewind
        model.fit(x, y, epochs=5, callbacks=[rewind])
    print(masks.remaining())  # hidden layers 0.8 ** 5, output layer 0.9 ** 5

With prune_at_end the weights are rewound when `fit` returns: score or save the trained
network of a round in the on_train_end of a callback listed before this one.
"""

from pathlib import Path

import keras
import numpy as np

from gim_zoo.lottery.masks import (check_global_score, check_rates, load_arrays,
                                   retrace_train_function, save_arrays)
from gim_zoo.optimizer_slots import reset_slots
from gim_zoo.validation import check_int


class PruneWithRewind(keras.callbacks.Callback):
    """Captures the rewind point during `fit`; prunes and rewinds when it ends.

    rewind_step: 0 rewinds to the initial weights (original lottery tickets); k > 0 to
      the weights after k training steps of the first fit (late rewinding). Everything
      except the masks is rewound (kernels, biases, norms); the optimizer's state is reset
      to fresh.
    rates / global_rate: magnitude pruning per layer kind (default LAYERWISE_RATES) or
      pooled over all kernels, ranked by global_score, "magnitude" or "lamp" (see
      PruningMasks.magnitude_prune).
    prune_at_end: prune and rewind in on_train_end (one fit = one round).
    rewind_at_end: rewind only, the masks unchanged (a control run whose masks come from
      elsewhere); ignored with prune_at_end.
    With neither, call `prune_and_rewind()` or `rewind()` after fit.
    """

    def __init__(self, masks, rewind_step=0, rates=None, global_rate=None,
                 prune_at_end=False, verbose=0, rewind_at_end=False, global_score="magnitude"):
        super().__init__()
        self.masks = masks
        self.rewind_step = check_int("rewind_step", rewind_step, low=0)
        # checked here (a bad rate refused before any training), kinds again at train begin
        self.rates, self.global_rate = check_rates(rates, global_rate, masks.kinds())
        self.global_score = check_global_score(global_score)
        self.prune_at_end = prune_at_end
        self.rewind_at_end = rewind_at_end
        self.verbose = verbose
        self.rewind_point = None
        self._step = 0

    def capture(self):
        self.rewind_point = [np.array(v.numpy()) for v in self._rewound_variables()]

    def _rewound_variables(self):
        return self.masks.unmasked_weights(self.model)

    def on_train_begin(self, logs=None):
        self.masks.check_model(self.model, "PruneWithRewind")
        self._step = 0
        self.masks.apply()
        retrace_train_function(self.model)  # JAX: the masks may have changed since
        if self.rewind_point is None and self.rewind_step == 0:
            self.capture()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.rewind_point is None and self._step == self.rewind_step:
            self.capture()

    def on_train_end(self, logs=None):
        if self.prune_at_end:
            self.prune_and_rewind()
        elif self.rewind_at_end:
            self.rewind()

    def prune_and_rewind(self):
        """Prune by magnitude, rewind to the rewind point, reset the optimizer."""
        if self.rewind_point is None:
            raise RuntimeError(
                f"no rewind point: training stopped before step {self.rewind_step}")
        new_masks = self.masks.magnitude_prune(self.rates, self.global_rate, self.global_score)
        self.rewind()
        self.masks.assign(new_masks)
        if self.verbose:
            print(f"pruned: {100 * self.masks.remaining():.1f}% of weights remain")
        return new_masks

    def rewind(self):
        """Every unmasked variable to the rewind point, pruned weights to zero, and the
        optimizer as freshly built (slots and step count zero)."""
        for variable, value in zip(self._rewound_variables(), self.rewind_point):
            variable.assign(value)
        self.masks.apply()
        reset_slots(self.model.optimizer, restart_step_count=True)

    def save_rewind_point(self, path):
        save_arrays(path, self.rewind_point)
        return Path(path)

    def load_rewind_point(self, path):
        self.rewind_point = load_arrays(path)

    def rewind_to_saved(self, model, path):
        """Outside fit (a resumed run, before its next round): load the rewind point saved
        at `path` and rewind `model` to it now, so that round starts from the weights the
        interrupted run would have started it from. Outside fit because a re-initialising
        control changes the weights after this and before the fit."""
        self.masks.check_model(model, "PruneWithRewind")
        self.set_model(model)
        self.load_rewind_point(path)
        self.rewind()
