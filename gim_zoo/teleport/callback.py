"""SymmetryTeleport: teleport a model's weights along a loss-preserving orbit during fit.

At the planned steps of a `fit` (before the step runs) the callback draws a teleport batch
from `data`, searches the symmetry orbit for a larger gradient norm (faster convergence
from there) or a flatter / sharper neighbourhood (see gim_zoo.teleport.search), and moves
the weights there.

    teleport = SymmetryTeleport((x_train, y_train), at_steps=(0, 50, 100), group="gl",
                                batch_size=64)
    model.fit(x_train, y_train, epochs=5, callbacks=[teleport])
    teleport.log  # per teleport: step, objective before / after, batch loss before / after

Optimizer state: the authors' code re-creates the optimizer after a teleport, because
momentum and Adam/AdaGrad accumulators were gathered in the old coordinates (a rescaled
channel's accumulated squared gradients no longer match its gradients). The default here,
optimizer_state="reset", zeroes the slots of the teleported variables and keeps the step
counter, so a learning-rate schedule is not restarted; "keep" leaves the slots as they are.
"""

import keras
import numpy as np
from keras import ops

from gim_zoo.optimizer_slots import reset_slots
from gim_zoo.teleport.search import Teleporter, check_search, check_tolerances
from gim_zoo.validation import check_int

OPTIMIZER_STATES = ("reset", "keep")


class SymmetryTeleport(keras.callbacks.Callback):
    """Teleport before steps `at_steps` of each `fit`.

    data: (x, y) arrays (y None for self-supervised models such as GreedyInfoMax); each
      teleport uses `batch_size` examples drawn from them with `seed`.
    at_steps: optimizer steps counted from the start of the `fit` call (0: before its first
      step), whatever the optimizer did in earlier fits; a second `fit` with the same
      callback teleports at them again. Each record in `log` has `step` (of that fit) and
      `optimizer_step` (the optimizer's global count).
    group: "rescale" (exact for any data) or "gl" (Sequential MLPs whose Dense layers are
      joined by (leaky) ReLU, as activation= or as a ReLU / LeakyReLU layer; exact on the
      teleport batch, which must be smaller than every such layer's width).
    objective: "grad_norm", "sharpness_min" or "sharpness_max".
    steps, lr: gradient steps on the group parameters and their (normalised) length.
    loss_tolerance, max_condition: see gim_zoo.teleport.Teleporter (a move is taken only
      where the batch loss stays within loss_tolerance, relative, and GL re-fits are
      well conditioned).

    The settings are checked when training begins (on_train_begin), before any step: the
    model must have layer pairs for `group`, and a GL teleport batch must fit the widths.
    """

    def __init__(self, data, at_steps=(0,), group="rescale", objective="grad_norm",
                 steps=10, lr=0.1, batch_size=32, optimizer_state="reset", loss_fn=None,
                 seed=0, verbose=1, loss_tolerance=1e-5, max_condition=1e3):
        super().__init__()
        if optimizer_state not in OPTIMIZER_STATES:
            raise ValueError(f"optimizer_state must be 'reset' or 'keep', got "
                             f"{optimizer_state!r}")
        x, y = data if isinstance(data, (tuple, list)) else (data, None)
        self.x, self.y = np.asarray(x), None if y is None else np.asarray(y)
        if not len(self.x) or (self.y is not None and len(self.y) != len(self.x)):
            raise ValueError(f"teleport data needs examples and as many labels; got "
                             f"{len(self.x)} inputs and "
                             f"{'no' if self.y is None else len(self.y)} labels")
        self.at_steps = sorted({check_int("at_steps", s, low=0, note="steps of a fit, "
                                          "counted from 0") for s in at_steps})
        self.group, self.objective = group, objective
        (self.steps, self.lr), self.batch_size = check_search(steps, lr), \
            check_int("batch_size", batch_size, low=1)
        self.optimizer_state, self.loss_fn = optimizer_state, loss_fn
        self.loss_tolerance, self.max_condition = check_tolerances(loss_tolerance,
                                                                   max_condition)
        self.seed, self.verbose = check_int("seed", seed, low=0), int(verbose)
        self._rng = np.random.default_rng(seed)
        self._teleporter = None
        self._first_step, self._done = 0, set()
        self.log = []  # one record per teleport: step, objective before/after, loss

    def _iterations(self):
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def _build(self):
        self._teleporter = Teleporter(self.model, self.group, self.objective, self.loss_fn,
                                      seed=self.seed, loss_tolerance=self.loss_tolerance,
                                      max_condition=self.max_condition)
        self._teleporter.check_batch(min(self.batch_size, len(self.x)))

    def on_train_begin(self, logs=None):
        self._build()
        self._first_step, self._done = self._iterations(), set()
        per_call = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if per_call > 1 and any(s % per_call for s in self.at_steps):
            raise ValueError(f"with steps_per_execution={per_call} the callback sees every "
                             f"{per_call}th step only; at_steps {self.at_steps} must be "
                             "multiples of it")

    def on_train_batch_begin(self, batch, logs=None):
        global_step = self._iterations()
        step = global_step - self._first_step
        if step not in self.at_steps or step in self._done:
            return
        self._done.add(step)
        record = {"step": step, "optimizer_step": global_step, **self.teleport_now()}
        self.log.append(record)
        if self.verbose and not record["applied"]:
            why = f"search stopped at {record['stopped']}" if record["stopped"] else \
                f"the batch loss would change {record['loss_before']:.5g} -> " \
                f"{record['loss_after']:.5g}"
            print(f"teleport at step {step} refused: {why}", flush=True)
        elif self.verbose:
            print(f"teleport at step {step}: {record['objective']} {record['before']:.4g} -> "
                  f"{record['after']:.4g} (batch loss {record['loss_before']:.5g} -> "
                  f"{record['loss_after']:.5g})"
                  + (f"; search stopped at {record['stopped']}" if record["stopped"] else ""),
                  flush=True)

    def teleport_now(self):
        """One teleport on a fresh batch; returns the Teleporter's record."""
        if self._teleporter is None:
            self._build()
        idx = self._rng.choice(len(self.x), size=min(self.batch_size, len(self.x)),
                               replace=False)
        batch = (self.x[idx], None if self.y is None else self.y[idx])
        record = self._teleporter.teleport(batch, steps=self.steps, lr=self.lr)
        if self.optimizer_state == "reset" and record["applied"]:
            reset_slots(self.model.optimizer, self._teleporter.touched_variables)
        return record

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["teleports"] = float(len(self.log))
