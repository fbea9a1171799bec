"""Iterative magnitude pruning (IMP) in a resumable run directory (training/lottery.py).

One round = train for `epochs`, evaluate, then prune the smallest surviving weights and
rewind the rest. Each round's masks and metrics are written before the next starts, so a
killed run resumes at the round it was in. Controls are first-class runs that read the
ticket run's masks: `random_reinit` (the ticket's mask, a fresh random initialisation) and
`random_prune` (random masks with the ticket's per-layer counts, the ticket's init).
"""

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np

from gim_zoo.callbacks.lottery import PruneWithRewind, PruningMasks
from gim_zoo.data import image_pipeline, load_fashion_mnist
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


def conv2(num_classes=10):
    """Conv-2 of Frankle & Carbin (two 3x3 conv 64, max-pool, 256-256 dense), 28x28 input."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(num_classes, activation="softmax"),
    ], name="conv2")


NETWORKS = {"lenet300": lenet_300_100, "conv2": conv2}
CONTROLS = ("", "random_reinit", "random_prune")


@dataclasses.dataclass
class LotteryConfig:
    network: str = "lenet300"
    out_dir: str = ""
    rounds: int = 5
    epochs: int = 5
    batch_size: int = 60
    learning_rate: float = 1.2e-3
    rewind_step: int = 0
    global_rate: float = 0.0  # 0: layerwise rates (dense 20%, output 10%, conv 15%)
    control: str = ""
    ticket_dir: str = ""
    seed: int = 0
    max_examples: int = 0
    data_dir: str = ""
    verbose: int = 2

    HELP = {
        "network": f"one of {sorted(NETWORKS)}",
        "rewind_step": "0: rewind to initialisation; k: to the weights after k steps",
        "global_rate": "prune this fraction of all surviving weights per round, pooled",
        "control": "'', 'random_reinit' or 'random_prune' (needs --ticket_dir)",
        "ticket_dir": "the ticket run a control takes its masks from",
    }


def _round_path(run, r):
    return run.path / "rounds" / f"round{r:02d}.json"


def completed_rounds(run):
    done = 0
    while _round_path(run, done).exists():
        done += 1
    return done


def run_imp(config):
    """Run (or resume) the rounds; returns the list of per-round metrics."""
    if config.network not in NETWORKS:
        raise ValueError(f"unknown network {config.network!r}; known: {sorted(NETWORKS)}")
    if config.control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, got {config.control!r}")
    if config.control and not config.ticket_dir:
        raise ValueError("a control run needs --ticket_dir (the ticket run to compare with)")
    if not config.out_dir:
        raise ValueError("--out_dir is required")
    run = RunDirectory(config.out_dir)
    run.prepare(dataclasses.asdict(config))
    (run.path / "rounds").mkdir(exist_ok=True)

    keras.utils.set_random_seed(config.seed)
    model = NETWORKS[config.network]()
    masks = PruningMasks(model)
    model.compile(keras.optimizers.Adam(config.learning_rate),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    rewind = PruneWithRewind(masks, config.rewind_step,
                             global_rate=config.global_rate or None)
    rewind.set_model(model)

    x_train, y_train = load_fashion_mnist("train", config.data_dir or None)
    x_test, y_test = load_fashion_mnist("test", config.data_dir or None)
    if config.max_examples:
        x_train, y_train = x_train[: config.max_examples], y_train[: config.max_examples]
    train = image_pipeline(x_train, y_train, batch_size=config.batch_size, seed=config.seed,
                           training=True, augment=False)  # the LTH papers: no augmentation
    test = image_pipeline(x_test, y_test, batch_size=1000)

    start = completed_rounds(run)
    if start:
        rewind.load_rewind_point(run.path / "rewind_point.npz")
        rewind.rewind()
    for r in range(start, config.rounds):
        round_masks = _masks_for_round(config, run, masks, r)
        if round_masks is not None:
            masks.assign(round_masks)
        if config.control == "random_reinit":
            _reinitialise(model, masks, config.seed + 1000 + r)
        masks.save(run.path / "rounds" / f"masks{r:02d}.npz")
        history = model.fit(train, validation_data=test, epochs=config.epochs,
                            callbacks=[rewind], verbose=config.verbose, shuffle=False)
        if r == 0 or rewind.rewind_point is not None:
            rewind.save_rewind_point(run.path / "rewind_point.npz")
        val = history.history["val_loss"]
        steps_per_epoch = int(np.ceil(len(x_train) / config.batch_size))
        metrics = {
            "round": r,
            "remaining": masks.remaining(),
            "test_accuracy": float(history.history["val_accuracy"][-1]),
            "best_epoch": int(np.argmin(val)) + 1,
            "early_stop_iteration": (int(np.argmin(val)) + 1) * steps_per_epoch,
            "final_train_loss": float(history.history["loss"][-1]),
        }
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


def _reinitialise(model, masks, seed):
    """Fresh random weights (same initialisers), keeping the mask: the re-init control."""
    keras.utils.set_random_seed(seed)
    fresh = model.__class__.from_config(model.get_config())
    fresh.build(model.input_shape)
    for target, source in zip(model.weights, fresh.weights):
        target.assign(source)
    masks.apply()
