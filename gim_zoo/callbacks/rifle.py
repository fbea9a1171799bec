"""RIFLE (Li et al., ICML 2020): re-initialise the classifier head during fine-tuning.

Why: when a pre-trained backbone is fine-tuned with a new head, the head fits the few
labels quickly and the loss gradient reaching the deep layers shrinks. Re-initialising
the head a few times (M times, evenly over E epochs) puts a large loss back on the
backbone, so its deeper layers keep receiving meaningful updates.

Only the head's variables change: each is redrawn from its own layer's initializer
(`kernel_initializer` for `kernel`, ...), with a fresh seed per re-initialisation. The
optimizer's step count, and with it the learning-rate schedule, is never restarted.
Optimizer slots (momentum, Adam moments) of the head are kept by default, as in the
authors' code; `reset_optimizer_slots=True` zeroes them, so the old head's momentum does
not push the new random head. Written with keras.ops only; works on any Keras model.

    from gim_zoo.callbacks import RIFLE

    model.fit(x, y, epochs=60, callbacks=[RIFLE("head", epochs=60, times=3)])
    # the layer named "head" is redrawn after epochs 15, 30 and 45

The authors' fine-tuning regime (torch.optim.SGD: momentum, L2 weight decay through the
gradient) is `HeadRateSGD`; their optional cyclic head learning rate, a cosine that
restarts at every re-init while the backbone follows the one schedule of the run, is
`RIFLE.cyclic_head_schedule` (a `CyclicCosineDecay`) given to it as `head_learning_rate`:

    rifle = RIFLE("head", epochs=40, times=3, quiet_epochs=5)
    optimizer = HeadRateSGD(keras.optimizers.schedules.CosineDecay(0.01, 40 * steps),
                            momentum=0.9, l2=1e-4, head_variables=model.get_layer("head").weights,
                            head_learning_rate=rifle.cyclic_head_schedule(0.01, steps))

A run resumed from a backup mid-way (fit(initial_epoch=k)) draws the same re-init values
as one never stopped: the re-inits planned before epoch k are replayed on the seed.
"""

import math

import keras
import numpy as np
from keras import ops

from gim_zoo.optimizer_slots import reset_slots
from gim_zoo.validation import check_int


def rifle_epochs(epochs, times, quiet_epochs=None):
    """Epoch counts after which the head is re-initialised: k * E / (M + 1), k = 1..M,
    rounded to the nearest epoch with halves rounded up (floor(k E / (M + 1) + 1/2), not
    Python's round-half-to-even). E.g. E=60, M=3: [15, 30, 45]; E=10, M=3: 2.5, 5, 7.5
    -> [3, 5, 8]; E=5, M=1: 2.5 -> [3]; E=10, M=4: 2, 4, 6, 8 -> [2, 4, 6, 8].
    Refuses plans that would re-initialise within the last `quiet_epochs` (default: a tenth
    of training, at least 1), where the head could not re-converge, and plans with two
    re-inits after the same epoch."""
    epochs, times = check_int("epochs", epochs, low=1), check_int("times", times, low=0)
    quiet = max(1, math.ceil(epochs / 10)) if quiet_epochs is None else \
        check_int("quiet_epochs", quiet_epochs, low=0, note="None: a tenth of the epochs")
    # exact integer arithmetic: floor(k E / (M + 1) + 1/2) = (2 k E + M + 1) // (2 (M + 1))
    planned = sorted({(2 * k * epochs + times + 1) // (2 * (times + 1))
                      for k in range(1, times + 1)})
    if len(planned) < times or (planned and planned[0] < 1):
        raise ValueError(f"{times} RIFLE re-initialisations do not fit in {epochs} epochs")
    late = [e for e in planned if epochs - e < quiet]
    if late:
        raise ValueError(
            f"RIFLE would re-initialise after epoch(s) {late} of {epochs}, inside the last "
            f"{quiet} epoch(s) where the head cannot re-converge: use fewer re-inits or "
            "more epochs, or lower quiet_epochs")
    return planned


def _positive_finite(name, value):
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


class CyclicCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """A cosine from `initial_learning_rate` to 0 that restarts at each of `restart_steps`:
    cycle k runs from restart k (0 for the first) to restart k + 1 (`decay_steps`, the end
    of training, for the last). RIFLE's cyclic head learning rate: a re-initialised head
    starts again at the full rate. Steps past `decay_steps` stay at 0."""

    def __init__(self, initial_learning_rate, restart_steps, decay_steps, name=None):
        super().__init__()
        self.initial_learning_rate = _positive_finite("initial_learning_rate",
                                                      initial_learning_rate)
        try:
            restarts = [int(s) for s in restart_steps]
            total = int(decay_steps)
        except (TypeError, ValueError):
            raise ValueError(f"restart_steps must be whole steps and decay_steps a whole "
                             f"number, got {restart_steps!r}, {decay_steps!r}") from None
        bounds = [0, *restarts, total]
        if total < 1 or any(b >= c for b, c in zip(bounds, bounds[1:])):
            raise ValueError(
                f"restart_steps must rise strictly between 0 and decay_steps ({total}), "
                f"got {restarts}: every cycle needs at least one step")
        self.restart_steps, self.decay_steps, self.name = restarts, total, name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = ops.zeros_like(step)
        end = ops.full_like(step, float((self.restart_steps or [self.decay_steps])[0]))
        ends = [*self.restart_steps[1:], self.decay_steps]
        for restart, next_end in zip(self.restart_steps, ends):
            reached = step >= restart
            start = ops.where(reached, float(restart), start)
            end = ops.where(reached, float(next_end), end)
        progress = ops.clip((step - start) / (end - start), 0.0, 1.0)
        return self.initial_learning_rate * 0.5 * (1.0 + ops.cos(np.pi * progress))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "restart_steps": list(self.restart_steps), "decay_steps": self.decay_steps,
                "name": self.name}


class HeadRateSGD(keras.optimizers.SGD):
    """SGD as torch.optim.SGD(momentum, weight_decay) fine-tunes (the RIFLE authors'
    regime), with the head at a learning rate of its own if asked.

    l2: weight decay added to every gradient (g + l2 * w, so it passes through momentum as
      torch's `weight_decay` does; Keras's `weight_decay=` is decoupled instead).
    head_variables, head_learning_rate: these variables (e.g. a layer's `.weights`) step at
      `head_learning_rate` (a number or a schedule of the optimizer step, such as
      `RIFLE.cyclic_head_schedule`), every other variable at `learning_rate`.
    The head's rate is computed from the step count inside the update, so it needs no
    callback and survives a resume from a backup of the optimizer's variables.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2=0.0, head_variables=(),
                 head_learning_rate=None, **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=float(momentum), **kwargs)
        self.l2 = float(l2)
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            raise ValueError(f"l2 must be a finite number >= 0, got {l2}")
        head_variables = list(head_variables)
        if (head_learning_rate is None) != (not head_variables):
            raise ValueError("give head_variables and head_learning_rate together (the head's "
                             "variables and their own learning rate), or neither")
        if head_learning_rate is not None and not callable(head_learning_rate):
            head_learning_rate = _positive_finite("head_learning_rate", head_learning_rate)
        self.head_learning_rate = head_learning_rate
        # Only the optimizer's keys of the head variables are kept: an attribute holding
        # the variables themselves would make Keras track them as optimizer variables
        # (saved twice, and donated twice to a JAX step). The TensorFlow backend hands
        # update_step its tf.Variable handles, which _var_key maps to the same keys.
        self._head_keys = frozenset(self._var_key(v) for v in head_variables)

    def head_rate(self):
        """The head's learning rate at the current step (None without a head rate)."""
        rate = self.head_learning_rate
        return rate(self.iterations) if callable(rate) else rate

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = gradient + ops.cast(self.l2, variable.dtype) * variable
        if self.head_learning_rate is not None and self._var_key(variable) in self._head_keys:
            learning_rate = ops.cast(self.head_rate(), variable.dtype)
        super().update_step(gradient, variable, learning_rate)


def _fresh_initializer(initializer, seed):
    """The same initializer (class and settings) with a new seed, so values differ."""
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = int(seed)
    return initializer.__class__.from_config(config)


class RIFLE(keras.callbacks.Callback):
    """Re-initialise `head_layers` after epochs `rifle_epochs(epochs, times, quiet_epochs)`.

    head_layers: layer names (or layers) of the model; every variable they own is redrawn.
    epochs: the E of the plan (the `epochs` given to `fit`).

    The plan: after epoch round(k E / (M + 1)), k = 1..M, halves rounded up (see
    `rifle_epochs`): E=60, M=3 -> after epochs 15, 30, 45; E=10, M=3 -> 3, 5, 8;
    E=8, M=3 -> 2, 4, 6. Epochs are those of `fit` (counted from 1; `initial_epoch` counts).

    The settings are checked when training begins (on_train_begin), before any epoch: every
    head layer must exist in the model, own weights and have an initializer for each,
    `fit` must run the E epochs of the plan, and a `CyclicCosineDecay` head rate of the
    optimizer must restart where this plan re-initialises.

    Resuming (fit(initial_epoch=k) after a backup): the re-inits planned after epochs
    before k are replayed (their random draws made again, the weights left alone) and
    logged with "replayed": True, so later re-inits draw what an unbroken run would.
    """

    def __init__(self, head_layers, epochs, times=3, quiet_epochs=None,
                 reset_optimizer_slots=False, seed=0, verbose=1):
        super().__init__()
        self.head_layers = [head_layers] if isinstance(head_layers, str | keras.Layer) \
            else list(head_layers)
        self.epochs = int(epochs)
        self.reinit_after = rifle_epochs(epochs, times, quiet_epochs)
        self.reset_optimizer_slots = bool(reset_optimizer_slots)
        self.verbose = int(verbose)
        self._rng = np.random.default_rng(check_int("seed", seed, low=0))
        self._first_epoch_seen = False
        self.log = []  # one dict per re-initialisation: epoch, optimizer step, variables

    def cyclic_head_schedule(self, initial_learning_rate, steps_per_epoch):
        """The head's cyclic learning rate for this plan (the RIFLE authors' option): a
        cosine from `initial_learning_rate` that restarts after every planned re-init and
        ends with training. Give it to `HeadRateSGD(head_learning_rate=...)`."""
        steps = int(steps_per_epoch)
        if steps < 1:
            raise ValueError(f"steps_per_epoch must be a positive whole number, got "
                             f"{steps_per_epoch!r}")
        return CyclicCosineDecay(initial_learning_rate, [e * steps for e in self.reinit_after],
                                 self.epochs * steps)

    def _layers(self):
        found = []
        for item in self.head_layers:
            layer = item if isinstance(item, keras.Layer) else None
            if layer is None:
                try:
                    layer = self.model.get_layer(item)
                except ValueError:
                    names = [la.name for la in self.model.layers]
                    raise ValueError(f"RIFLE head layer {item!r} is not in model "
                                     f"{self.model.name!r} (its layers: {names})") from None
            if not layer.weights:
                raise ValueError(f"RIFLE head layer {layer.name!r} has no weights (build "
                                 "the model first, or name the layer that holds the head)")
            found.append(layer)
        self._check_own(found)
        return found

    def _check_own(self, layers):
        """Refuse a layer object of another model: re-initialising it would leave the
        fitted model's head alone."""
        own = {id(v) for v in self.model.weights}
        for layer in layers:
            if not all(id(v) in own for v in layer.weights):
                raise ValueError(
                    f"RIFLE head layer {layer.name!r} is not a layer of {self.model.name!r}, "
                    "the model being fit (a layer of another model?): pass the fitted "
                    "model's own head layer, or its name")

    def _initializer(self, layer, variable):
        initializer = getattr(layer, f"{variable.name}_initializer", None)
        if initializer is None:
            raise ValueError(f"RIFLE cannot re-initialise {variable.path}: layer "
                             f"{layer.name!r} has no {variable.name}_initializer")
        return keras.initializers.get(initializer)

    def reinitialise(self, draw_only=False):
        """Redraw every head variable now; returns their paths. draw_only: make the random
        draws only, changing nothing (a resumed run replaying an earlier re-init)."""
        paths = []
        for layer in self._layers():
            for variable in layer.weights:
                seed = self._rng.integers(2**31 - 1)
                paths.append(variable.path)
                if draw_only:
                    continue
                init = _fresh_initializer(self._initializer(layer, variable), seed)
                variable.assign(ops.cast(init(variable.shape, variable.dtype), variable.dtype))
        if draw_only:
            return paths
        if self.reset_optimizer_slots:
            reset_slots(self.model.optimizer,
                        [v for layer in self._layers() for v in layer.weights])
        return paths

    def on_train_begin(self, logs=None):
        for layer in self._layers():
            for variable in layer.weights:
                self._initializer(layer, variable)
        fit_epochs = (self.params or {}).get("epochs")
        if fit_epochs is not None and int(fit_epochs) != self.epochs:
            raise ValueError(
                f"RIFLE was planned for {self.epochs} epochs (re-inits after "
                f"{self.reinit_after}) but fit runs {fit_epochs}: pass fit's epochs to RIFLE")
        self._check_cyclic_head_rate()
        self._first_epoch_seen = False

    def _check_cyclic_head_rate(self):
        rate = getattr(self.model.optimizer, "head_learning_rate", None)
        steps = (self.params or {}).get("steps")
        if not isinstance(rate, CyclicCosineDecay) or not steps:
            return
        planned = [e * int(steps) for e in self.reinit_after]
        if rate.restart_steps != planned or rate.decay_steps != self.epochs * int(steps):
            raise ValueError(
                f"the optimizer's cyclic head learning rate restarts at steps "
                f"{rate.restart_steps} of {rate.decay_steps}, but RIFLE re-initialises at "
                f"steps {planned} of {self.epochs * int(steps)}: build it with "
                "rifle.cyclic_head_schedule(lr, steps_per_epoch)")

    def on_epoch_begin(self, epoch, logs=None):
        if self._first_epoch_seen:
            return
        self._first_epoch_seen = True
        steps = (self.params or {}).get("steps")
        for done in self.reinit_after[len(self.log):]:
            if done > epoch:
                break
            paths = self.reinitialise(draw_only=True)
            self.log.append({"after_epoch": done, "optimizer_step": done * steps if steps
                             else None, "variables": paths, "replayed": True})

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done in self.reinit_after:
            self._reinitialise_after(done)
        if logs is not None:  # every epoch, so CSV and TensorBoard logs get a full column
            logs["rifle_reinits"] = float(len(self.log))

    def _reinitialise_after(self, done):
        paths = self.reinitialise()
        step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        self.log.append({"after_epoch": done, "optimizer_step": step, "variables": paths})
        if self.verbose:
            print(
                f"RIFLE: re-initialised {', '.join(paths)} after epoch {done} "
                f"(optimizer step {step}; {len(self.log)}/{len(self.reinit_after)})", flush=True)
