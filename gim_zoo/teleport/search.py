"""Teleportation: search a symmetry orbit of the weights for a better objective.

Zhao, Gower, Walters, Yu (ICLR 2024). Teleporting moves the weights along a loss-preserving
orbit (gim_zoo.teleport.symmetries) to a point where an objective is better, e.g. a larger
gradient norm (faster descent from there) or a flatter / sharper neighbourhood.

    teleporter = Teleporter(model, group="rescale", objective="grad_norm")
    record = teleporter.teleport((x_batch, y_batch), steps=10, lr=0.1)  # moves the weights
    record["before"], record["after"]    # the objective; record["applied"]: moved or not

Whatever the action, a point is taken only if the batch loss there is within
`loss_tolerance` (relative, default 1e-5; 1e-6 absolute for losses near zero) of the loss
before; the search stops at the first point that is not.

The search runs a few normalised gradient steps on the group parameters (log-scales, or
T in g = I + T), evaluating the model at transformed weights through `keras.StatelessScope`
(so any loss works, including a GreedyInfoMax module's InfoNCE, and random state such as
negative samples is the same at every evaluation). The best point seen is kept, so the
objective never gets worse than not teleporting. Weights and group actions are keras.ops;
differentiation is per backend (TensorFlow; JAX follows the same two functions).
"""

import keras
import numpy as np
from keras import ops

from gim_zoo.teleport.symmetries import actions_for
from gim_zoo.validation import check_int, check_number

OBJECTIVES = ("grad_norm", "sharpness_min", "sharpness_max")


def check_search(steps, lr):
    """(steps, lr) of an orbit search, checked: at least one gradient step of a finite,
    positive length (a NaN length would move nowhere and still report a teleport)."""
    return (check_int("steps", steps, low=1, note="gradient steps of the orbit search"),
            check_number("lr", lr, low=0, low_open=True, note="the search's step length"))


def check_tolerances(loss_tolerance, max_condition):
    """(loss_tolerance, max_condition), checked: see Teleporter."""
    return (check_number("loss_tolerance", loss_tolerance, low=0),
            check_number("max_condition", max_condition, low=1))


# --- differentiation, the only backend-specific part -------------------------------------
def value_and_grad(fn, params):
    """(fn(params), d fn / d params) for a scalar fn of a list of tensors."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        params = [tf.convert_to_tensor(p) for p in params]
        with tf.GradientTape() as tape:
            tape.watch(params)
            value = fn(params)
        return value, tape.gradient(value, params)
    if backend == "jax":
        import jax

        return jax.value_and_grad(fn)(list(params))
    raise NotImplementedError(f"teleportation is not implemented for the {backend} backend")


# --- losses and objectives ----------------------------------------------------------------
def default_loss(model, batch):
    """The loss teleportation must preserve: a GreedyInfoMax model's summed module InfoNCE
    losses (each module's gradient comes only from its own loss), else the compiled loss."""
    x, y = batch
    if hasattr(model, "module_losses"):
        return ops.sum(ops.stack(list(model.module_losses(x).values())))
    loss = model.loss
    if loss is None:
        raise ValueError(f"{model.name} is not compiled with a loss; pass loss_fn=")
    loss = keras.losses.get(loss) if isinstance(loss, str) else loss
    return ops.mean(loss(y, model(x, training=False)))


class Teleporter:
    """Searches the orbit of `model`'s weights for a better `objective` on one batch.

    loss_tolerance: a point of the orbit is taken only if the batch loss there differs from
      the loss before by at most this fraction of it (1e-6 absolute for losses near 0).
    max_condition: GL(n) only; a point is taken only if every re-fit there inverts a
      matrix sigma(z g^T) with condition number at most this (ill-conditioned re-fits
      preserve the batch loss but give huge weights, and training diverges from there).
    The search stops at the first point that fails either; the best point before it is
    kept (the identity, i.e. no move, if none).
    """

    def __init__(self, model, group="rescale", objective="grad_norm", loss_fn=None,
                 rho=0.05, perturbations=2, seed=0, loss_tolerance=1e-5, max_condition=1e3):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.model, self.group, self.objective = model, group, objective
        self.loss_fn = loss_fn or default_loss
        self.actions = actions_for(model, group)
        self.variables = list(model.trainable_variables)
        self.rho = check_number("rho", rho, low=0, low_open=True)
        self.perturbations = check_int("perturbations", perturbations, low=1)
        self.loss_tolerance, self.max_condition = check_tolerances(loss_tolerance,
                                                                   max_condition)
        self._rng = np.random.default_rng(seed)

    def check_batch(self, size):
        """Raises ValueError if a teleport batch of `size` examples is outside the
        condition of an action (GL(n): the batch must be smaller than the width)."""
        for action in self.actions:
            if hasattr(action, "check_batch"):
                action.check_batch(int(size))

    def condition(self, params, context):
        """The largest condition number among the GL(n) re-fits at `params` (1 if none)."""
        return max((a.condition(t, context) for a, t in zip(self.actions, params)
                    if hasattr(a, "condition")), default=1.0)

    def _refusal(self, params, context, batch, loss_before):
        """Why the orbit point `params` may not be taken (None if it may)."""
        condition = self.condition(params, context)
        if not condition <= self.max_condition:
            return f"condition number {condition:.3g} > {self.max_condition:.3g}"
        loss = float(ops.convert_to_numpy(self.loss_at(self.transformed(params, context),
                                                       batch)))
        if not abs(loss - loss_before) <= self._tolerance(loss_before):
            return f"batch loss {loss_before:.7g} -> {loss:.7g}"
        return None

    def _tolerance(self, loss):
        return max(self.loss_tolerance * abs(loss), 1e-6)

    @property
    def touched_variables(self):
        seen = {}
        for action in self.actions:
            for v in action.variables:
                seen[id(v)] = v
        return list(seen.values())

    def loss_at(self, values, batch):
        """The loss with the model's trainable variables read as `values` (a list)."""
        with keras.StatelessScope(state_mapping=list(zip(self.variables, values))):
            return self.loss_fn(self.model, batch)

    def transformed(self, params, context):
        values = {id(v): v.value for v in self.variables}
        for action, t in zip(self.actions, params):
            action.apply(values, t, context)
        return [values[id(v)] for v in self.variables]

    def grad_norm(self, values, batch):
        """||d loss / d weights||^2 at `values`."""
        _, grads = value_and_grad(lambda vals: self.loss_at(vals, batch), values)
        return ops.sum(ops.stack([ops.sum(ops.square(g)) for g in grads if g is not None]))

    def sharpness(self, values, batch, directions):
        """Mean loss increase when the weights move by rho * ||W|| along fixed random unit
        directions: lower is flatter."""
        base = self.loss_at(values, batch)
        increases = []
        for direction in directions:
            moved = [v + d for v, d in zip(values, direction)]
            increases.append(self.loss_at(moved, batch) - base)
        return ops.mean(ops.stack(increases))

    def _directions(self):
        weights_norm = np.sqrt(sum(float(np.sum(np.square(ops.convert_to_numpy(v))))
                                   for v in self.variables))
        directions = []
        for _ in range(self.perturbations):
            noise = [self._rng.standard_normal(tuple(v.shape)) for v in self.variables]
            scale = self.rho * weights_norm / np.sqrt(sum(np.sum(n**2) for n in noise))
            directions.append([ops.convert_to_tensor((scale * n).astype("float32"))
                               for n in noise])
        return directions

    def _context(self, batch):
        """Pre-activations each GL action needs, at the current weights on the batch."""
        if self.group != "gl":
            return None
        context, h = {}, ops.convert_to_tensor(batch[0])
        firsts = {id(a.first): a for a in self.actions}
        for layer in self.model.layers:
            if id(layer) in firsts:
                z = ops.matmul(ops.reshape(h, (ops.shape(h)[0], -1)), layer.kernel.value)
                context[id(firsts[id(layer)])] = z + layer.bias.value if layer.use_bias else z
            h = layer(h)
        return context

    def score(self, values, batch, directions=None):
        if self.objective == "grad_norm":
            return self.grad_norm(values, batch)
        return self.sharpness(values, batch, directions)

    def teleport(self, batch, steps=10, lr=0.1):
        """Move the model's weights to the best orbit point found; returns a record of the
        objective and the loss before and after."""
        steps, lr = check_search(steps, lr)
        batch = tuple(ops.convert_to_tensor(b) if b is not None else None for b in batch)
        self.check_batch(ops.shape(batch[0])[0])
        context = self._context(batch)
        directions = self._directions() if self.objective != "grad_norm" else None
        sign = -1.0 if self.objective == "sharpness_min" else 1.0  # ascend on sign*score

        def objective(params):
            return sign * self.score(self.transformed(params, context), batch, directions)

        before_values = [v.value for v in self.variables]
        loss_before = float(ops.convert_to_numpy(self.loss_at(before_values, batch)))
        params = [a.identity() for a in self.actions]
        best_value, best_params, start_value, stopped = None, params, None, None
        start_condition = self.condition(params, context)
        if not start_condition <= self.max_condition:  # every move from here is refused
            steps = 0
            stopped = (f"the start: condition number {start_condition:.3g} > "
                       f"{self.max_condition:.3g} (use a smaller teleport batch)")
        for step in range(steps + 1):
            if step > 0:  # the identity is the weights as they are
                stopped = self._refusal(params, context, batch, loss_before)
                if stopped is not None:
                    stopped = f"search step {step}: {stopped}"
                    break
            value, grads = value_and_grad(objective, params)
            # a pair the loss does not reach (e.g. a GIM module not being trained) stays put
            grads = [ops.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
            value = float(ops.convert_to_numpy(value))
            if start_value is None:
                start_value = value
            if best_value is None or value > best_value:
                best_value, best_params = value, params
            if not np.isfinite(value):
                break
            if step == steps:
                break
            norm = np.sqrt(sum(float(ops.convert_to_numpy(ops.sum(ops.square(g))))
                               for g in grads))
            if not np.isfinite(norm) or norm == 0:
                break
            params = [p + (lr / norm) * g for p, g in zip(params, grads)]

        new_values = self.transformed(best_params, context)
        loss_after = float(ops.convert_to_numpy(self.loss_at(new_values, batch)))
        # the search took only points within the tolerance; this also refuses a move whose
        # "symmetry" changes the loss everywhere (a layer pair the structure check got wrong)
        applied = bool(np.isfinite(loss_after) and start_condition <= self.max_condition
                       and abs(loss_after - loss_before) <= self._tolerance(loss_before))
        if applied:
            for variable, value in zip(self.variables, new_values):
                variable.assign(value)
        return {"objective": self.objective, "group": self.group, "applied": applied,
                "before": sign * start_value, "after": sign * best_value if applied
                else sign * start_value, "loss_before": loss_before, "loss_after": loss_after,
                "condition": self.condition(best_params, context), "stopped": stopped}
