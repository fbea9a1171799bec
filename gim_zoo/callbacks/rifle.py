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
    head layer must exist in the model, own weights and have an initializer for each, and
    `fit` must run the E epochs of the plan.
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
        self.log = []  # one dict per re-initialisation: epoch, optimizer step, variables

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

    def reinitialise(self):
        """Redraw every head variable now; returns their paths."""
        paths = []
        for layer in self._layers():
            for variable in layer.weights:
                init = _fresh_initializer(self._initializer(layer, variable),
                                          self._rng.integers(2**31 - 1))
                variable.assign(ops.cast(init(variable.shape, variable.dtype), variable.dtype))
                paths.append(variable.path)
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
