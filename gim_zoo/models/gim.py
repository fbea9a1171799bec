"""GreedyInfoMax: a Keras model whose train_step trains each encoder module on its own loss.

Modules are chained with `stop_gradient`, so module k learns only from its own InfoNCE
head (Loewe, O'Connor, Veeling, NeurIPS 2019). The same class gives the paper's baselines:
`isolate=False, loss_modules="last", autoregressor=True` is end-to-end CPC. With
`train_module=k` only module k (and its head) trains, and modules before it run outside
the gradient tape, so their activations are freed at once: that is what makes
module-at-a-time training need less memory (the official code keeps the graph alive).

`overlap=n` is LoCo's remedy for greedy modules that are too shallow (Xiong, Ren, Urtasun,
NeurIPS 2020): module k's loss is scored after the first n blocks of module k+1, so it
also trains them and module k learns what the next module can use; each module's input
is still cut off by `stop_gradient`. The last module's loss is unchanged.

The losses and layers are written in keras.ops; only the train/test steps are
backend-specific, in a mixin chosen when this module is imported: TensorFlow records the
trained modules on a GradientTape; JAX runs Keras 3's stateless step, differentiating with
respect to the trained variables only (the InfoNCE heads' seed generators travel in the
non-trainable state). Under JAX this module does not import TensorFlow.
"""

import keras
from keras import ops

from gim_zoo.models.autoregressor import RowCausalContext
from gim_zoo.models.encoder_wrapper import WrapsEncoder
from gim_zoo.models.infonce import InfoNCE


def _mean_over_replicas(grads):
    """Divide per-replica gradients by the number of replicas in sync.

    Under tf.distribute, Keras's TF optimizer all-reduces gradients with SUM (keras Loss
    objects pre-scale losses by 1/replicas for this; a custom train_step must do it
    itself). GIM's losses are means over the replica's share of the batch, so without
    this, R replicas would apply R times the one-device gradient. With it, the update
    is the mean over replicas of each replica's gradient. One replica: unchanged.
    """
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return grads
    return [None if g is None else g / replicas for g in grads]


class _TensorFlowSteps:
    """train_step with a GradientTape around the trained modules only."""

    def losses_on_tape(self, images):
        """(tape, total loss, {module: loss}) with only the trained modules recorded."""
        import tensorflow as tf

        if self.train_module is None:
            with tf.GradientTape() as tape:
                losses = self.module_losses(images, training=True)
                total = ops.sum(ops.stack(list(losses.values())))
            return tape, total, losses
        k = self.train_module - 1
        h = self._frozen_prefix(images)  # outside the tape: no activations kept
        with tf.GradientTape() as tape:
            losses = {k: self._module_loss(k, h, self.encoder.gim_modules[k](h, training=True),
                                           training=True)}
        return tape, losses[k], losses

    def train_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        if not self.optimizer.built:  # compile() builds it; a model compiled otherwise
            self.optimizer.build(self.trained_variables)
        variables = self.trained_variables
        tape, total, losses = self.losses_on_tape(images)
        with tape:  # mixed_float16: a LossScaleOptimizer scales (and apply unscales)
            scaled = self.optimizer.scale_loss(total)
        grads = tape.gradient(scaled, variables)
        grads = _mean_over_replicas(grads)  # tf.distribute: see the helper
        self.optimizer.apply(grads, variables)
        return self._record(total, losses)

    def test_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        losses = self.module_losses(images, training=False)
        return self._record(ops.sum(ops.stack(list(losses.values()))), losses)


class _JaxSteps:
    """Keras 3's stateless JAX steps: `train_step(state, data) -> (logs, state)`.

    state = (trainable, non_trainable, optimizer, metrics) values, in the order of
    `trainable_variables`, `non_trainable_variables` (including the InfoNCE seed
    generators' states, so every step draws new negatives), `optimizer.variables` and
    `metrics_variables`. Gradients are taken with respect to `trained_variables` only,
    and only those are updated: with `train_module=k` the other modules' values pass
    through unchanged, as under TensorFlow.
    """

    def _stateless_losses(self, trainable, non_trainable, images, training):
        """(total, {module: loss}, new non-trainable values) at the given values."""
        mapping = list(zip(self.trainable_variables, trainable)) + \
            list(zip(self.non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            if training:
                total, losses = self._training_losses(images)
            else:
                losses = self.module_losses(images, training=False)
                total = ops.sum(ops.stack(list(losses.values())))
        return total, losses, [scope.get_current_value(v) for v in self.non_trainable_variables]

    def _stateless_record(self, metrics_values, total, losses):
        with keras.StatelessScope(
                state_mapping=list(zip(self.metrics_variables, metrics_values))) as scope:
            logs = self._record(total, losses)
        return logs, [scope.get_current_value(v) for v in self.metrics_variables]

    def _scaled(self, total, optimizer_values):
        """optimizer.scale_loss at the optimizer's values in `state` (a LossScaleOptimizer
        under mixed_float16 multiplies by its dynamic scale; apply divides it out)."""
        mapping = list(zip(self.optimizer.variables, optimizer_values))
        with keras.StatelessScope(state_mapping=mapping):
            return self.optimizer.scale_loss(total)

    def train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_values, metrics_values = state
        images = data[0] if isinstance(data, (tuple, list)) else data
        # Positions of the trained variables in trainable_variables, in the order the
        # optimizer was built with (GreedyInfoMax.compile builds it over these).
        index = {id(v): i for i, v in enumerate(self.trainable_variables)}
        positions = [index[id(v)] for v in self.trained_variables]

        def loss_fn(trained_values):
            values = list(trainable)
            for i, value in zip(positions, trained_values):
                values[i] = value
            total, losses, new_non_trainable = self._stateless_losses(
                values, non_trainable, images, training=True)
            return self._scaled(total, optimizer_values), (total, losses, new_non_trainable)

        (_, (total, losses, non_trainable)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)([trainable[i] for i in positions])
        variables = self.trainable_variables
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # Its apply branches (ops.cond) on finite gradients with stateful branches,
            # which JAX cannot trace; its stateless_apply branches on pure functions. It
            # takes the variables the optimizer was built over: trained_variables, as
            # GreedyInfoMax.compile builds it.
            trained_values, optimizer_values = self.optimizer.stateless_apply(
                optimizer_values, grads, [trainable[i] for i in positions])
            trainable = list(trainable)
            for i, value in zip(positions, trained_values):
                trainable[i] = value
        else:
            # Optimizer.apply on the trained subset in a stateless scope (what
            # stateless_apply does for the full list the optimizer was built with),
            # so an optimizer built over more variables works too.
            mapping = list(zip(variables, trainable)) + \
                list(zip(self.optimizer.variables, optimizer_values))
            with keras.StatelessScope(state_mapping=mapping) as scope:
                self.optimizer.apply(grads, [variables[i] for i in positions])
            trainable = [scope.get_current_value(v) for v in variables]
            optimizer_values = [scope.get_current_value(v) for v in self.optimizer.variables]
        logs, metrics_values = self._stateless_record(metrics_values, total, losses)
        return logs, (trainable, non_trainable, optimizer_values, metrics_values)

    def test_step(self, state, data):
        trainable, non_trainable, metrics_values = state
        images = data[0] if isinstance(data, (tuple, list)) else data
        total, losses, non_trainable = self._stateless_losses(
            trainable, non_trainable, images, training=False)
        logs, metrics_values = self._stateless_record(metrics_values, total, losses)
        return logs, (trainable, non_trainable, metrics_values)


_BackendSteps = _JaxSteps if keras.backend.backend() == "jax" else _TensorFlowSteps


@keras.saving.register_keras_serializable(package="gim_zoo")
class GreedyInfoMax(WrapsEncoder, _BackendSteps, keras.Model):
    """Self-supervised trainer around a modular encoder (e.g. PatchResNetEncoder).

    Args:
      encoder: a model with `module_input(x)`, `gim_modules`, `module_grid(h, i)`, `grid`,
        `output_channels` and `num_modules` (PatchResNetEncoder, AudioEncoder).
      prediction_steps, negatives, skip: InfoNCE settings (paper: 5, 16, 1).
      isolate: stop gradients between modules (GIM) or not (end-to-end).
      loss_modules: "all" (one InfoNCE per module) or "last" (CPC: one loss on top).
      autoregressor: use a row-causal context network before the last loss (CPC).
      train_module: None trains every module; k (1-based) trains only module k (and,
        with overlap, the first `overlap` blocks of module k+1).
      seed: seed of the negative samplers.
      overlap: LoCo overlap, in blocks of the next module (0: plain GIM).
      directions: where each InfoNCE head predicts, from "down", "up", "right", "left"
        (the paper: down only). Not with a context network (CPC's autoregressor, the audio
        GRU): its context has seen the rows the other directions would predict.
    """

    def __init__(
        self,
        encoder,
        prediction_steps=5,
        negatives=16,
        skip=1,
        isolate=True,
        loss_modules="all",
        autoregressor=False,
        train_module=None,
        seed=None,
        overlap=0,
        directions=("down",),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if loss_modules not in ("all", "last"):
            raise ValueError(f"loss_modules must be 'all' or 'last', got {loss_modules!r}")
        n = encoder.num_modules
        if train_module is not None and not 1 <= int(train_module) <= n:
            raise ValueError(f"train_module must be in 1..{n}, got {train_module}")
        if train_module is not None and loss_modules == "last" and int(train_module) != n:
            raise ValueError("with loss_modules='last' only the last module has a loss to train")
        self.overlap = int(overlap)
        if self.overlap and (not isolate or getattr(encoder, "autoregressive_modules", ())):
            raise ValueError("overlap needs isolated modules (isolate=True) of an encoder "
                             "without context-network modules (e.g. PatchResNetEncoder)")
        if self.overlap < 0 or any(self.overlap > len(m.layers)
                                   for m in encoder.gim_modules[1:]):
            raise ValueError(f"overlap must be in 0..(blocks of the next module), got {overlap}")
        self.directions = tuple(directions)
        if self.directions != ("down",) and (
                autoregressor or getattr(encoder, "autoregressive_modules", ())):
            raise ValueError(f"directions {self.directions} need contexts that see only "
                             "their own patch: not with an autoregressor or context-network "
                             "modules (their context has seen the rows above)")
        self.encoder = encoder
        self.prediction_steps, self.negatives, self.skip = prediction_steps, negatives, skip
        self.isolate, self.loss_modules = bool(isolate), loss_modules
        self.train_module = None if train_module is None else int(train_module)
        self.seed = seed
        self.loss_indices = list(range(n)) if loss_modules == "all" else [n - 1]
        self.heads = [
            InfoNCE(prediction_steps, negatives, skip,
                    seed=None if seed is None else seed + i, directions=self.directions,
                    name=f"infonce{i + 1}")
            for i in self.loss_indices
        ]
        self.context_net = RowCausalContext(name="context") if autoregressor else None
        self.loss_trackers = {"loss": keras.metrics.Mean(name="loss")}
        reported = self.loss_indices if self.train_module is None else [self.train_module - 1]
        for i in reported:
            name = f"module{i + 1}_loss"
            self.loss_trackers[name] = keras.metrics.Mean(name=name)
        self._build_heads()

    def _build_heads(self):
        grid, channels = self.encoder.grid, self.encoder.output_channels
        for head, i in zip(self.heads, self.loss_indices):
            scored = channels[i + 1] if self._bridge(i) else channels[i]
            target = channels[i - 1] if i in self._autoregressive else scored
            head.build((None, grid, grid, scored), (None, grid, grid, target))
        if self.context_net is not None:
            self.context_net.build((None, grid, grid, channels[-1]))
        self.built = True

    @property
    def _autoregressive(self):
        """Modules that are context networks (the audio GRU): their loss predicts their
        input, the previous module's output, from their own output, as CPC's c_t
        predicts z_{t+k}. Every other module predicts its own output."""
        return tuple(getattr(self.encoder, "autoregressive_modules", ()))

    def _bridge(self, i):
        """The blocks of module i+1 that module i's loss also trains (LoCo overlap)."""
        if not self.overlap or i >= self.encoder.num_modules - 1:
            return []
        return self.encoder.gim_modules[i + 1].layers[: self.overlap]

    def _module_loss(self, i, module_input, h, training=False, negative_indices=None):
        """InfoNCE of module i, given its input and output (through the overlap blocks)."""
        for block in self._bridge(i):
            h = block(h, training=training)
        return self._head_loss(i, self.encoder.module_grid(h, i), negative_indices,
                               self._targets(i, module_input))

    def _targets(self, i, module_input):
        if i not in self._autoregressive:
            return None
        return self.encoder.module_grid(module_input, i - 1)

    @property
    def metrics(self):
        return list(self.loss_trackers.values())

    def call(self, images, training=False):
        return self.encoder(images, training=training)

    def module_losses(self, images, training=False, negative_indices=None):
        """{module index (0-based): InfoNCE loss}, chained per `isolate`/`train_module`.

        Modules before `train_module` run here too; `train_step` keeps them off the tape.
        """
        h = self.encoder.module_input(images)
        last = self.encoder.num_modules if self.train_module is None else self.train_module
        losses = {}
        for i, module in enumerate(self.encoder.gim_modules[:last]):
            if self.isolate and i > 0:
                h = ops.stop_gradient(h)
            module_input, h = h, module(h, training=training)
            if i in self.loss_indices and (self.train_module is None or i == last - 1):
                losses[i] = self._module_loss(i, module_input, h, training, negative_indices)
        return losses

    def _head_loss(self, i, z, negative_indices, targets=None):
        head = self.heads[self.loss_indices.index(i)]
        context = z if self.context_net is None or i != self.encoder.num_modules - 1 \
            else self.context_net(z)
        return head(context, z if targets is None else targets,
                    negative_indices=negative_indices)

    def compile(self, optimizer="rmsprop", *args, **kwargs):
        """keras.Model.compile, then the optimizer is built over `trained_variables`:
        with `train_module=k` its state (Adam's moments) exists for module k alone, which
        saves memory and keeps a module-at-a-time backup small (ResumableBackup's
        `variables`). Keras would build it over every trainable variable."""
        super().compile(optimizer, *args, **kwargs)
        if self.optimizer is not None and not self.optimizer.built and self.encoder.built:
            self.optimizer.build(self.trained_variables)

    @property
    def trained_variables(self):
        """The variables a train step changes: every trainable variable, or with
        `train_module=k` module k's, its InfoNCE head's (and context network's) and any
        LoCo overlap blocks'."""
        if self.train_module is None:
            return self.trainable_variables
        k = self.train_module - 1
        variables = list(self.encoder.gim_modules[k].trainable_variables)
        if k in self.loss_indices:
            variables += self.heads[self.loss_indices.index(k)].trainable_variables
        if self.context_net is not None and k == self.encoder.num_modules - 1:
            variables += self.context_net.trainable_variables
        for block in self._bridge(k):
            variables += block.trainable_variables
        return variables

    def _frozen_prefix(self, images):
        """Run modules before `train_module` without recording gradients."""
        h = self.encoder.module_input(images)
        for module in self.encoder.gim_modules[: self.train_module - 1]:
            h = module(h, training=False)
        return ops.stop_gradient(h)

    def _training_losses(self, images):
        """(total, {module: loss}) as a train step computes them (for JAX's step; the
        TensorFlow step computes the same inside its tape, see losses_on_tape)."""
        if self.train_module is None:
            losses = self.module_losses(images, training=True)
            return ops.sum(ops.stack(list(losses.values()))), losses
        k = self.train_module - 1
        h = self._frozen_prefix(images)
        loss = self._module_loss(k, h, self.encoder.gim_modules[k](h, training=True),
                                 training=True)
        return loss, {k: loss}

    def _record(self, total, losses):
        self.loss_trackers["loss"].update_state(total)
        for i, value in losses.items():
            self.loss_trackers[f"module{i + 1}_loss"].update_state(value)
        return {name: tracker.result() for name, tracker in self.loss_trackers.items()}

    def get_config(self):
        return {
            **super().get_config(),
            "prediction_steps": self.prediction_steps,
            "negatives": self.negatives,
            "skip": self.skip,
            "isolate": self.isolate,
            "loss_modules": self.loss_modules,
            "autoregressor": self.context_net is not None,
            "train_module": self.train_module,
            "seed": self.seed,
            "overlap": self.overlap,
            "directions": list(self.directions),
        }
