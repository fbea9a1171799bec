"""SymmetryTeleport: teleport a model's weights along a loss-preserving orbit during fit.

At the planned optimizer steps (before the step runs) the callback draws a teleport batch
from `data`, searches the symmetry orbit for a larger gradient norm (faster convergence
from there) or a flatter / sharper neighbourhood (see gim_zoo.symmetry), and moves the
weights there.

Optimizer state: the authors' code re-creates the optimizer after a teleport, because
momentum and Adam/AdaGrad accumulators were gathered in the old coordinates (a rescaled
channel's accumulated squared gradients no longer match its gradients). The default here,
optimizer_state="reset", zeroes the slots of the teleported variables and keeps the step
counter, so a learning-rate schedule is not restarted; "keep" leaves the slots as they are.
"""

import keras
import numpy as np
from keras import ops

from gim_zoo.callbacks.optimizer_slots import reset_slots
from gim_zoo.symmetry import Teleporter


class SymmetryTeleport(keras.callbacks.Callback):
    """Teleport before optimizer steps `at_steps`.

    data: (x, y) arrays (y None for self-supervised models such as GreedyInfoMax); each
      teleport uses `batch_size` examples drawn from them with `seed`.
    group: "rescale" (exact for any data) or "gl" (Sequential leaky-ReLU MLPs; exact on
      the teleport batch, which must be no larger than the layer width).
    objective: "grad_norm", "sharpness_min" or "sharpness_max".
    steps, lr: gradient steps on the group parameters and their (normalised) length.
    """

    def __init__(self, data, at_steps=(0,), group="rescale", objective="grad_norm",
                 steps=10, lr=0.1, batch_size=32, optimizer_state="reset", loss_fn=None,
                 seed=0, verbose=1):
        super().__init__()
        if optimizer_state not in ("reset", "keep"):
            raise ValueError(f"optimizer_state must be 'reset' or 'keep', got "
                             f"{optimizer_state!r}")
        x, y = data if isinstance(data, (tuple, list)) else (data, None)
        self.x, self.y = np.asarray(x), None if y is None else np.asarray(y)
        self.at_steps = sorted({int(s) for s in at_steps})
        self.group, self.objective = group, objective
        self.steps, self.lr, self.batch_size = int(steps), float(lr), int(batch_size)
        self.optimizer_state, self.loss_fn = optimizer_state, loss_fn
        self.seed, self.verbose = int(seed), int(verbose)
        self._rng = np.random.default_rng(seed)
        self._teleporter = None
        self.log = []  # one record per teleport: step, objective before/after, loss

    def on_train_begin(self, logs=None):
        self._teleporter = Teleporter(self.model, self.group, self.objective, self.loss_fn,
                                      seed=self.seed)

    def on_train_batch_begin(self, batch, logs=None):
        step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        if step not in self.at_steps or any(r["step"] == step for r in self.log):
            return
        record = {"step": step, **self.teleport_now()}
        self.log.append(record)
        if self.verbose and not record["applied"]:
            print(f"teleport at step {step} refused: the batch loss would change "
                  f"{record['loss_before']:.5g} -> {record['loss_after']:.5g}", flush=True)
        elif self.verbose:
            print(f"teleport at step {step}: {record['objective']} {record['before']:.4g} -> "
                  f"{record['after']:.4g} (batch loss {record['loss_before']:.5g} -> "
                  f"{record['loss_after']:.5g})", flush=True)

    def teleport_now(self):
        """One teleport on a fresh batch; returns the Teleporter's record."""
        if self._teleporter is None:
            self.on_train_begin()
        idx = self._rng.choice(len(self.x), size=min(self.batch_size, len(self.x)),
                               replace=False)
        batch = (self.x[idx], None if self.y is None else self.y[idx])
        record = self._teleporter.teleport(batch, steps=self.steps, lr=self.lr)
        if self.optimizer_state == "reset":
            reset_slots(self.model.optimizer, self._teleporter.touched_variables)
        return record

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["teleports"] = float(len(self.log))
