"""The teleportation experiment: an MLP on Fashion-MNIST with and without teleports.

What training/teleport.py runs. A leaky-ReLU MLP (784-128-128-10, as small as the ICLR 2024
paper's MLP experiments) is trained from the same initial weights, on the same batches,
with SGD, AdaGrad or Adam; the teleport variant adds `SymmetryTeleport` (gradient-norm
objective) at a few early steps. Recorded: the full training-subset loss every
`eval_every` steps, the first step at which it falls below `target_loss`, the final test
accuracy, and each teleport's gradient norm before and after.

`--model=gim-fmnist-resnet` instead trains module 1 of a fresh GIM encoder under its own
InfoNCE loss with and without teleports (per-channel rescaling inside its blocks).
"""

import dataclasses
import time

import keras
from keras import ops

from gim_zoo.data import load_fashion_mnist
from gim_zoo.data.sources import FASHION_MNIST
from gim_zoo.teleport import GROUPS, OBJECTIVES, OPTIMIZER_STATES, SymmetryTeleport
from gim_zoo.validation import check_config, integer, number
from experiments.run_directory import EpochTimer, RunDirectory

OPTIMIZERS = {  # name -> (class, default learning rate)
    "sgd": (keras.optimizers.SGD, 0.05),
    "adagrad": (keras.optimizers.Adagrad, 0.05),
    "adam": (keras.optimizers.Adam, 1e-3),
}


@dataclasses.dataclass
class TeleportConfig:
    model: str = "mlp"
    optimizer: str = "sgd"
    learning_rate: float = 0.0
    teleport: bool = True
    group: str = "gl"
    objective: str = "grad_norm"
    at_steps: str = "0,50,100,150,200"
    teleport_steps: int = 10
    teleport_lr: float = 0.03
    teleport_batch: int = 64
    optimizer_state: str = "reset"
    width: int = 128
    train_examples: int = 10000
    epochs: int = 5
    batch_size: int = 64
    eval_every: int = 25
    target_loss: float = 0.5
    seed: int = 0
    data_dir: str = ""
    out_dir: str = ""
    verbose: int = 1

    LIMITS = {"learning_rate": number(0, note="0: the optimizer's default"),
              "teleport_steps": integer(1), "teleport_lr": number(0, low_open=True),
              "teleport_batch": integer(1), "width": integer(1),
              "train_examples": integer(1), "epochs": integer(1), "batch_size": integer(1),
              "eval_every": integer(1), "target_loss": number(), "seed": integer(0),
              "verbose": integer(0, 2)}

    HELP = {
        "model": "mlp (leaky-ReLU 784-W-W-10) or gim-fmnist-resnet (its module 1 under "
                 "InfoNCE, rescaling group)",
        "optimizer": "sgd, adagrad or adam",
        "teleport_steps": "gradient steps of the orbit search at each teleport",
        "teleport_lr": "step size of the orbit search (on the group parameters)",
        "width": "hidden units of each of the MLP's two hidden layers",
        "epochs": "training epochs over --train_examples",
        "batch_size": "examples per training batch",
        "learning_rate": "optimizer learning rate; 0: sgd 0.05, adagrad 0.05, adam 1e-3",
        "teleport": "teleport at --at_steps (off: the baseline with the same everything else)",
        "group": "gl (data-dependent GL(n), exact on the teleport batch) or rescale",
        "objective": "grad_norm (convergence), sharpness_min or sharpness_max",
        "at_steps": "steps of the run before which to teleport, comma-separated",
        "teleport_batch": "examples per teleport (gl: fewer than --width)",
        "optimizer_state": "reset (zero the teleported variables' slots) or keep",
        "train_examples": "first N Fashion-MNIST training images",
        "eval_every": "steps between full training-subset loss evaluations",
        "target_loss": "report the first evaluated step whose training loss is below this",
        "out_dir": "run directory (default: runs/teleport/<model>-<optimizer>-<plain|teleport|"
                   "teleport-keep>-seed<s>)",
    }

    def steps(self):
        try:
            steps = sorted({int(s) for s in str(self.at_steps).split(",") if s.strip()})
        except ValueError:
            steps = [-1]
        if steps and steps[0] < 0:
            raise ValueError(f"--at_steps wants comma-separated steps >= 0 like 0,50,100; "
                             f"got {self.at_steps!r}")
        return steps


def mlp(width=128, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255.0, name="scale"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(width, activation="leaky_relu", name="hidden1"),
        keras.layers.Dense(width, activation="leaky_relu", name="hidden2"),
        keras.layers.Dense(10, name="logits"),
    ], name="mlp")


class TrainingLossProbe(keras.callbacks.Callback):
    """Every `every` optimizer steps, the loss on the whole training subset; logs the
    latest in the epoch logs (`subset_loss`)."""

    def __init__(self, loss_of_model, every):
        super().__init__()
        self.loss_of_model, self.every = loss_of_model, int(every)
        self.curve = []

    def _measure(self):
        step = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        if not self.curve or self.curve[-1][0] != step:
            self.curve.append((step, float(self.loss_of_model())))

    def on_train_begin(self, logs=None):
        self._measure()

    def on_train_batch_end(self, batch, logs=None):
        if int(ops.convert_to_numpy(self.model.optimizer.iterations)) % self.every == 0:
            self._measure()

    def on_epoch_end(self, epoch, logs=None):
        self._measure()
        if logs is not None:
            logs["subset_loss"] = self.curve[-1][1]


def steps_to_target(curve, target):
    """First evaluated step with loss <= target (None if never)."""
    return next((step for step, loss in curve if loss <= target), None)


def _check(config):
    from gim_zoo import registry

    check_config(config)
    config.steps()  # --at_steps parses
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got "
                         f"{config.optimizer!r}")
    if config.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {config.objective!r}")
    if config.group not in GROUPS:
        raise ValueError(f"group must be 'rescale' or 'gl', got {config.group!r}")
    if config.optimizer_state not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer_state must be 'reset' or 'keep', got "
                         f"{config.optimizer_state!r}")
    if config.group == "gl" and config.teleport_batch >= config.width:
        raise ValueError(f"GL(n) teleports need teleport_batch < width ({config.width}); got "
                         f"{config.teleport_batch} (at batch = width the re-fit is "
                         "ill-conditioned)")
    if config.model != "mlp":
        spec = registry.get(config.model)
        if spec.objective == "supervised" or spec.dataset is not FASHION_MNIST:
            raise ValueError(f"--model must be mlp or a Fashion-MNIST gim/cpc encoder, got "
                             f"{spec.name}")


def run_teleport_experiment(config):
    """Train one configuration; returns (and writes) its metrics."""
    _check(config)  # before the run directory exists: a typo must not leave one behind
    arm = "plain" if not config.teleport else \
        "teleport" if config.optimizer_state == "reset" else "teleport-keep"
    name = f"{config.model}-{config.optimizer}-{arm}"
    run = RunDirectory(config.out_dir or f"runs/teleport/{name}-seed{config.seed}")
    run.prepare(dataclasses.asdict(config))
    done = run.read_metrics()
    if "final_subset_loss" in done:
        return done  # a run takes a minute or two: it resumes by re-running whole

    train_x, train_y = load_fashion_mnist("train", config.data_dir or None)
    test_x, test_y = load_fashion_mnist("test", config.data_dir or None)
    train_x = train_x[: config.train_examples].astype("float32")
    train_y = train_y[: config.train_examples].astype("int32")
    test_x, test_y = test_x.astype("float32"), test_y.astype("int32")
    optimizer_cls, default_lr = OPTIMIZERS[config.optimizer]
    optimizer = optimizer_cls(config.learning_rate or default_lr)

    if config.model == "mlp":
        model = mlp(config.width, config.seed)
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        teleport_data = (train_x, train_y)

        def subset_loss():
            return model.evaluate(train_x, train_y, batch_size=2000, verbose=0)[0]
    else:
        model, subset_loss = _gim_module1(config, train_x, optimizer)
        teleport_data = (train_x, None)

    probe = TrainingLossProbe(subset_loss, config.eval_every)
    callbacks = []
    teleport = None
    if config.teleport:
        teleport = SymmetryTeleport(
            teleport_data, config.steps(), config.group, config.objective,
            config.teleport_steps, config.teleport_lr, config.teleport_batch,
            config.optimizer_state, seed=config.seed, verbose=config.verbose)
        callbacks.append(teleport)
    callbacks += [probe, EpochTimer(), keras.callbacks.CSVLogger(str(run.history_path)),
                  keras.callbacks.TensorBoard(str(run.logs_dir))]

    keras.utils.set_random_seed(config.seed)  # the same batch order with or without
    start = time.perf_counter()
    model.fit(train_x, None if config.model != "mlp" else train_y,
              batch_size=config.batch_size, epochs=config.epochs, shuffle=True,
              callbacks=callbacks, verbose=config.verbose)
    seconds = time.perf_counter() - start
    metrics = {
        "model": config.model, "optimizer": config.optimizer, "teleport": config.teleport,
        "arm": arm,
        "seed": config.seed, "curve": probe.curve,
        "steps_to_target": steps_to_target(probe.curve, config.target_loss),
        "target_loss": config.target_loss, "final_subset_loss": probe.curve[-1][1],
        "teleports": teleport.log if teleport else [], "seconds": seconds,
    }
    if config.model == "mlp":
        metrics["test_accuracy"] = float(
            model.evaluate(test_x, test_y, batch_size=2000, verbose=0)[1])
    return run.update_metrics(**metrics)


def _gim_module1(config, train_x, optimizer):
    """GreedyInfoMax training only module 1 of a fresh registered encoder."""
    from gim_zoo import registry

    spec = registry.get(config.model)
    keras.utils.set_random_seed(config.seed)
    model = spec.build_model(train_module=1, seed=config.seed)
    model.compile(optimizer)
    evaluate_on = train_x[:2000]

    def subset_loss():
        return model.evaluate(evaluate_on, batch_size=250, verbose=0)[0]

    return model, subset_loss
