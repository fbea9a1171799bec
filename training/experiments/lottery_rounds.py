"""Iterative magnitude pruning (IMP) in a resumable run directory (training/lottery.py).

One round = train for `epochs`, evaluate, then prune the smallest surviving weights and
rewind the rest. Each round's masks and metrics are written before the next starts, so a
killed run resumes at the round it was in. Controls are first-class runs that read the
ticket run's masks: `random_reinit` (the ticket's mask, a fresh random initialisation) and
`random_prune` (random masks with the ticket's per-layer counts, the ticket's init).

Networks: supervised LeNet-300-100 and Conv-2 (scored by test accuracy), or a GIM encoder
pruned under its own InfoNCE losses with no labels (scored by a linear probe). Every
round's trained weights are kept (`load_ticket`), so a ticket can be exported.
"""

import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np

from gim_zoo.callbacks.lottery import LAYERWISE_RATES, PruneWithRewind, PruningMasks
from gim_zoo.data import image_pipeline, load_fashion_mnist
from gim_zoo.models.probe import balanced_subset, fit_linear_probe
from gim_zoo.runs import RunDirectory, atomic_write_json


def lenet_300_100(num_classes=10):
    """LeNet-300-100 (Frankle & Carbin's MNIST network) for 28x28 grayscale images."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Flatten(),
        keras.layers.Dense(300, activation="relu"),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dense(num_classes, activation="softmax"),
    ], name="lenet_300_100")


def conv2(num_classes=10, filters=32):
    """Conv-2 of Frankle & Carbin (two 3x3 convs, max-pool, 256-256 dense) for 28x28
    images, with 32 filters instead of their 64 so that IMP's many rounds fit 2 CPU cores."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(num_classes, activation="softmax"),
    ], name="conv2")


NETWORKS = {"lenet300": lenet_300_100, "conv2": conv2}
CONTROLS = ("", "random_reinit", "random_prune")


def known_networks():
    """LeNet-300-100, Conv-2 and the registered Fashion-MNIST encoders (GIM/CPC pruned
    under InfoNCE, supervised under cross-entropy; the driver's data are Fashion-MNIST)."""
    from gim_zoo import registry

    return sorted(NETWORKS) + [n for n in registry.list_models()
                               if registry.get(n).dataset == "fashion_mnist"
                               and not registry.get(n).ticket_of]


@dataclasses.dataclass
class LotteryConfig:
    network: str = "lenet300"
    out_dir: str = ""
    rounds: int = 5
    epochs: int = 5
    batch_size: int = 60
    learning_rate: float = 1.2e-3
    rewind_step: int = 0
    global_rate: float = 0.0  # 0: layerwise rates (dense 20%, output 10%, conv conv_rate)
    conv_rate: float = 0.15
    control: str = ""
    ticket_dir: str = ""
    seed: int = 0
    max_examples: int = 0
    eval_examples: int = 0
    probe_labels_per_class: int = 100
    probe_steps: int = 1000
    data_dir: str = ""
    verbose: int = 2

    HELP = {
        "out_dir": "run directory (required; created, and re-running the same command "
                   "resumes at the first unfinished round)",
        "rounds": "pruning rounds: train, prune, rewind; round 0 is the dense network",
        "epochs": "training epochs per round",
        "batch_size": "examples per training batch",
        "learning_rate": "Adam learning rate, every round",
        "max_examples": "train on the first N training images only (quick runs, tests); "
                        "0: all 60,000",
        "network": "lenet300, conv2, or a registered GIM encoder such as gim-fmnist-resnet "
                   "(pruned under its own InfoNCE losses, scored by a linear probe)",
        "rewind_step": "0: rewind to initialisation; k: to the weights after k steps",
        "conv_rate": "layerwise pruning: fraction of surviving conv weights removed per "
                     "round (Frankle & Carbin: 10-15%)",
        "global_rate": "prune this fraction of all surviving weights per round, pooled",
        "control": "'', 'random_reinit' or 'random_prune' (needs --ticket_dir)",
        "ticket_dir": "the ticket run a control takes its masks from",
        "eval_examples": "test images used (0: all 10,000)",
        "probe_labels_per_class": "GIM encoders: labels per class for the round's probe",
        "probe_steps": "GIM encoders: Adam steps of the round's probe",
    }


def build_network(network, seed=0):
    """The (uncompiled) model of a network name: a supervised net or a GreedyInfoMax."""
    if network in NETWORKS:
        return NETWORKS[network]()
    from gim_zoo import registry

    return registry.get(network).build_model(seed=seed)


def is_self_supervised(network):
    from gim_zoo import registry

    return network not in NETWORKS and registry.get(network).objective in ("gim", "cpc")


def choose_round(rounds, tolerance=0.01):
    """The sparsest round still scoring within `tolerance` of the dense round 0: the
    winning ticket a run offers (round 0 itself if none is)."""
    dense = rounds[0]["test_accuracy"]
    matching = [r for r in rounds if r["test_accuracy"] >= dense - tolerance]
    return min(matching, key=lambda r: r["remaining"])["round"]


def load_ticket(run_dir, r):
    """(model, masks) of an IMP run as trained in round r, pruned weights exactly zero."""
    run = RunDirectory(run_dir)
    config = LotteryConfig(**run.read_config())
    model = build_network(config.network, config.seed)
    masks = PruningMasks(model)
    path = trained_weights_path(run_dir, r)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: round {r} has not finished")
    model.load_weights(path)
    masks.load(Path(run_dir) / "rounds" / f"masks{r:02d}.npz")
    return model, masks


class SupervisedTask:
    """A classifier trained on labels; a round scores its final test accuracy and the
    epoch of lowest test loss (the papers' early-stopping iteration)."""

    augment = False  # the LTH papers train without augmentation
    eval_batch_size = 1000

    def __init__(self, config):
        self.config = config
        x_train, y_train = load_fashion_mnist("train", config.data_dir or None)
        x_test, y_test = load_fashion_mnist("test", config.data_dir or None)
        if config.max_examples:
            x_train, y_train = x_train[: config.max_examples], y_train[: config.max_examples]
        if config.eval_examples:
            x_test, y_test = x_test[: config.eval_examples], y_test[: config.eval_examples]
        self.steps_per_epoch = int(np.ceil(len(x_train) / config.batch_size))
        self.train = image_pipeline(x_train, y_train, batch_size=config.batch_size,
                                    seed=config.seed, training=True, augment=self.augment)
        self.test = image_pipeline(x_test, y_test, batch_size=self.eval_batch_size)

    def build(self):
        model = build_network(self.config.network, self.config.seed)
        model.compile(keras.optimizers.Adam(self.config.learning_rate),
                      "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, model, callbacks):
        history = model.fit(self.train, validation_data=self.test, epochs=self.config.epochs,
                            callbacks=callbacks, verbose=self.config.verbose, shuffle=False)
        return self.score(model, history.history)

    def score(self, model, history):
        best = int(np.argmin(history["val_loss"])) + 1
        return {
            "test_accuracy": float(history["val_accuracy"][-1]),
            "best_epoch": best,
            "early_stop_iteration": best * self.steps_per_epoch,
            "final_train_loss": float(history["loss"][-1]),
        }


class InfoNCETask(SupervisedTask):
    """A GIM encoder trained by its own per-module InfoNCE losses (no labels); a round
    scores a linear probe on the last module (pooled as the registry says) trained on
    `probe_labels_per_class` labels per class, on the full test set."""

    augment = True  # as train.py trains GIM encoders
    eval_batch_size = 200  # each test image is 49 patches through the encoder

    def __init__(self, config):
        from gim_zoo import registry

        self.spec = registry.get(config.network)
        super().__init__(config)
        x_train, y_train = load_fashion_mnist("train", config.data_dir or None)
        keep = balanced_subset(y_train, config.probe_labels_per_class, config.seed)
        self.probe_train = image_pipeline(x_train[keep], y_train[keep], batch_size=256)

    def build(self):
        model = build_network(self.config.network, self.config.seed)
        model.compile(keras.optimizers.Adam(self.config.learning_rate))
        return model

    def score(self, model, history):
        _, probe = fit_linear_probe(
            model.encoder, self.probe_train, self.test, num_classes=self.spec.num_classes,
            pool_to=self.spec.probe_pool_to, steps=self.config.probe_steps,
            seed=self.config.seed)
        best = int(np.argmin(history["val_loss"])) + 1
        return {
            "test_accuracy": probe["test_accuracy"],  # of the linear probe
            "probe_train_examples": probe["train_examples"],
            "best_epoch": best,
            "early_stop_iteration": best * self.steps_per_epoch,
            "final_train_loss": float(history["loss"][-1]),
            "final_test_infonce": float(history["val_loss"][-1]),
        }


def trained_weights_path(run_dir, r):
    """The network as trained in round r (before pruning and rewinding): the ticket."""
    return Path(run_dir) / "rounds" / f"trained{r:02d}.weights.h5"


def save_weights_atomically(model, path):
    from gim_zoo.runs import atomic_save_weights  # removes its temporary file on errors

    atomic_save_weights(model, path)


def _round_path(run, r):
    return run.path / "rounds" / f"round{r:02d}.json"


def completed_rounds(run):
    done = 0
    while _round_path(run, done).exists():
        done += 1
    return done


def run_imp(config):
    """Run (or resume) the rounds; returns the list of per-round metrics."""
    if config.network not in known_networks():
        raise ValueError(f"unknown network {config.network!r}; known: {known_networks()}")
    if config.control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, got {config.control!r}")
    if config.control and not config.ticket_dir:
        raise ValueError("a control run needs --ticket_dir (the ticket run to compare with)")
    if not config.out_dir:
        raise ValueError("--out_dir is required")
    run = RunDirectory(config.out_dir)
    run.prepare(dataclasses.asdict(config), defaults=dataclasses.asdict(LotteryConfig()))
    (run.path / "rounds").mkdir(exist_ok=True)

    task = (InfoNCETask if is_self_supervised(config.network) else SupervisedTask)(config)
    keras.utils.set_random_seed(config.seed)
    model = task.build()
    masks = PruningMasks(model)
    rates = {**LAYERWISE_RATES, "conv": config.conv_rate}
    rewind = PruneWithRewind(masks, config.rewind_step, rates=rates,
                             global_rate=config.global_rate or None)
    rewind.set_model(model)

    start = completed_rounds(run)
    if start:
        rewind.load_rewind_point(run.path / "rewind_point.npz")
        rewind.rewind()
    for r in range(start, config.rounds):
        round_masks = _masks_for_round(config, run, masks, r)
        if round_masks is not None:
            masks.assign(round_masks)
        if config.control == "random_reinit":
            _reinitialise(model, task.build, masks, config.seed + 1000 + r)
        masks.save(run.path / "rounds" / f"masks{r:02d}.npz")
        start_time = time.perf_counter()
        scores = task.fit(model, [rewind])
        metrics = {"round": r, "remaining": masks.remaining(), **scores,
                   "seconds": round(time.perf_counter() - start_time, 1)}
        save_weights_atomically(model, trained_weights_path(run.path, r))
        if r == 0 or rewind.rewind_point is not None:
            rewind.save_rewind_point(run.path / "rewind_point.npz")
        if config.control:
            rewind.rewind()
        else:
            rewind.prune_and_rewind()
            masks.save(run.path / "rounds" / f"masks{r + 1:02d}.npz")
        atomic_write_json(_round_path(run, r), metrics)
    rounds = [json.loads(_round_path(run, r).read_text()) for r in range(config.rounds)]
    run.update_metrics(rounds=rounds, status="complete")
    return rounds


def _masks_for_round(config, run, masks, r):
    """A ticket's round-r masks: its own (saved at the end of round r-1) or, for a
    control, derived from the ticket run's round-r masks."""
    if not config.control:
        path = run.path / "rounds" / f"masks{r:02d}.npz"
        return None if r == 0 else _load(masks, path)
    ticket = _load(masks, Path(config.ticket_dir) / "rounds" / f"masks{r:02d}.npz")
    if config.control == "random_prune":
        return masks.random_prune(ticket, seed=config.seed + r)
    return ticket


def _load(masks, path):
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist (has the ticket run reached it?)")
    with np.load(path) as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    return dict(zip(masks.masks, arrays))


def _reinitialise(model, build, masks, seed):
    """Fresh random weights (same initialisers), keeping the mask: the re-init control."""
    keras.utils.set_random_seed(seed)
    fresh = build()
    targets = masks.unmasked_weights(model)
    if len(targets) != len(fresh.weights):
        raise RuntimeError("re-initialisation: the fresh model's weights do not line up")
    for target, source in zip(targets, fresh.weights):
        target.assign(source)
    masks.apply()
