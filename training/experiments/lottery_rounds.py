"""Iterative magnitude pruning (IMP) in a resumable run directory (training/lottery.py).

One round = one `fit` with PruneWithRewind: train for `epochs`, evaluate, then prune the
smallest surviving weights and rewind the rest. Each round's masks and metrics are written
before the next starts, so a killed run resumes at the round it was in. Controls are
first-class runs that read the ticket run's masks: `random_reinit` (the ticket's mask, a
fresh random initialisation) and `random_prune` (random masks with the ticket's per-layer
counts, the ticket's init). A control starts every round from the ticket run's rewind point
(re-initialised for `random_reinit`) and may train only some rounds (`control_rounds`:
each round is independent of the others, so a control can be run at the sparsities that
matter only).

Networks (gim_zoo.lottery.networks): supervised LeNet-300-100 and Conv-2 (scored by test
accuracy), or a GIM encoder pruned under its own InfoNCE losses with no labels (scored by a
linear probe). Every round's trained weights are kept, so a ticket can be exported
(gim_zoo.lottery.load_ticket reads them; the run's layout is in gim_zoo.lottery.tickets).
"""

import dataclasses
import time

import keras
import numpy as np

from gim_zoo import registry
from gim_zoo.data import image_pipeline, load_fashion_mnist
from gim_zoo.data.sources import FASHION_MNIST
from gim_zoo.files import atomic_save_weights, atomic_write_json
from gim_zoo.lottery import (GLOBAL_SCORES, LAYERWISE_RATES, NETWORKS, PruneWithRewind,
                             PruningMasks)
from gim_zoo.lottery.networks import build_network
from gim_zoo.lottery.tickets import (completed_rounds, masks_path, read_round_masks,
                                     read_round_metrics, rewind_point_path,
                                     round_metrics_by_number, round_metrics_path,
                                     trained_weights_path)
from gim_zoo.models.probe import balanced_subset, fit_linear_probe
from gim_zoo.validation import check_config, integer, number, rate
from .run_directory import RunDirectory

CONTROLS = ("", "random_reinit", "random_prune")


def known_networks():
    """LeNet-300-100, Conv-2 and the registered Fashion-MNIST encoders (GIM/CPC pruned
    under InfoNCE, supervised under cross-entropy; the driver's data are Fashion-MNIST)."""
    return sorted(NETWORKS) + [n for n in registry.list_models()
                               if registry.get(n).dataset is FASHION_MNIST
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
    global_score: str = "magnitude"  # or "lamp": how global pruning ranks the weights
    conv_rate: float = 0.15
    control: str = ""
    ticket_dir: str = ""
    control_rounds: str = ""  # e.g. "9,10,11"; empty: every round below `rounds`
    seed: int = 0
    max_examples: int = 0
    eval_examples: int = 0
    probe_labels_per_class: int = 100
    probe_steps: int = 1000
    data_dir: str = ""
    verbose: int = 2

    LIMITS = {"rounds": integer(1), "epochs": integer(1), "batch_size": integer(1),
              "learning_rate": number(0, low_open=True), "rewind_step": integer(0),
              "global_rate": rate(), "conv_rate": rate(), "seed": integer(0),
              "max_examples": integer(0, note="0: all"),
              "eval_examples": integer(0, note="0: all"),
              "probe_labels_per_class": integer(1), "probe_steps": integer(1),
              "verbose": integer(0, 2)}

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
        "global_score": "how --global_rate ranks the pooled weights: 'magnitude' (|w|) or "
                        "'lamp' (Lee et al. 2021: |w|^2 over the sum of w^2 of the layer's "
                        "larger weights, so no layer is emptied first)",
        "control": "'', 'random_reinit' or 'random_prune' (needs --ticket_dir)",
        "ticket_dir": "the ticket run a control takes its masks from",
        "control_rounds": "a control: train only these rounds (comma-separated, e.g. "
                          "9,10,11); default every round",
        "eval_examples": "test images used (0: all 10,000)",
        "probe_labels_per_class": "GIM encoders: labels per class for the round's probe",
        "probe_steps": "GIM encoders: Adam steps of the round's probe",
    }


def is_self_supervised(network):
    return network not in NETWORKS and registry.get(network).objective in ("gim", "cpc")


def pruning_rule(config, kinds):
    """What a run pruned each round, in words, for a network with kernels of `kinds` (a
    packaged ticket's metrics and card)."""
    if config.global_rate:
        scored = " by LAMP score" if config.global_score == "lamp" else ""
        return (f"global: {config.global_rate:.0%} of all surviving weights per round, "
                f"pooled{scored}")
    rates = {**LAYERWISE_RATES, "conv": config.conv_rate}
    return "layerwise: " + ", ".join(f"{rates[kind]:.0%} of each {kind} kernel's surviving "
                                     "weights" for kind in sorted(kinds)) + " per round"


def rewinding_rule(config):
    """Where a run rewound the surviving weights to each round, in words (a packaged
    ticket's metrics and card)."""
    if config.rewind_step:
        return (f"survivors rewound to their values after step {config.rewind_step} of "
                "round 0 (late rewinding)")
    return "survivors rewound to their initial values"


def choose_round(rounds, tolerance=0.01):
    """The sparsest round still scoring within `tolerance` of the dense round 0: the
    winning ticket a run offers (round 0 itself if none is)."""
    dense = rounds[0]["test_accuracy"]
    matching = [r for r in rounds if r["test_accuracy"] >= dense - tolerance]
    return min(matching, key=lambda r: r["remaining"])["round"]


class RoundTask:
    """What a round trains on and how it is scored, shared by the two kinds of network:
    Fashion-MNIST train / test pipelines, the fit, and the early-stopping scores. A
    subclass says how to compile the network and what its test score is."""

    augment = False  # the LTH papers train without augmentation
    eval_batch_size = 1000
    compile_args = {}  # besides the Adam optimizer: a loss and metrics, if the model needs

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
        model.compile(keras.optimizers.Adam(self.config.learning_rate), **self.compile_args)
        return model

    def fit(self, model, callbacks):
        model.fit(self.train, validation_data=self.test, epochs=self.config.epochs,
                  callbacks=callbacks, verbose=self.config.verbose, shuffle=False)

    def training_scores(self, history):
        """The epoch of lowest test loss (the papers' early-stopping iteration) and the
        final training loss."""
        best = int(np.argmin(history["val_loss"])) + 1
        return {"best_epoch": best, "early_stop_iteration": best * self.steps_per_epoch,
                "final_train_loss": float(history["loss"][-1])}

    def score(self, model, history):
        raise NotImplementedError


class SupervisedTask(RoundTask):
    """A classifier trained on labels; a round scores its final test accuracy."""

    compile_args = {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}

    def score(self, model, history):
        return {"test_accuracy": float(history["val_accuracy"][-1]),
                **self.training_scores(history)}


class InfoNCETask(RoundTask):
    """A GIM encoder trained by its own per-module InfoNCE losses (no labels); a round
    scores a linear probe on the last module (pooled as the registry says) trained on
    `probe_labels_per_class` labels per class, on the full test set."""

    augment = True  # as train.py trains GIM encoders
    eval_batch_size = 200  # each test image is 49 patches through the encoder

    def __init__(self, config):
        self.spec = registry.get(config.network)
        super().__init__(config)
        x_train, y_train = load_fashion_mnist("train", config.data_dir or None)
        keep = balanced_subset(y_train, config.probe_labels_per_class, config.seed)
        self.probe_train = image_pipeline(x_train[keep], y_train[keep], batch_size=256)

    def score(self, model, history):
        _, probe = fit_linear_probe(
            model.encoder, self.probe_train, self.test, num_classes=self.spec.num_classes,
            pool_to=self.spec.probe_pool_to, steps=self.config.probe_steps,
            seed=self.config.seed)
        return {
            "test_accuracy": probe["test_accuracy"],  # of the linear probe
            "probe_train_examples": probe["train_examples"],
            **self.training_scores(history),
            "final_test_infonce": float(history["val_loss"][-1]),
        }


class KeepTrainedRound(keras.callbacks.Callback):
    """Listed before PruneWithRewind: when round r's fit ends, and before that callback
    prunes and rewinds, scores the network as trained and keeps it (the round's ticket)
    and the rewind point. The round's metrics are in `metrics` after fit."""

    def __init__(self, task, run_dir, r, rewind):
        super().__init__()
        self.task, self.run_dir, self.r, self.rewind = task, run_dir, r, rewind
        self.metrics = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_end(self, logs=None):
        scores = self.task.score(self.model, self.model.history.history)
        self.metrics = {"round": self.r, "remaining": self.rewind.masks.remaining(), **scores,
                        "seconds": round(time.perf_counter() - self._start, 1)}
        atomic_save_weights(self.model, trained_weights_path(self.run_dir, self.r))
        if self.rewind.rewind_point is not None:  # else PruneWithRewind says why it stops
            self.rewind.save_rewind_point(rewind_point_path(self.run_dir))


def run_imp(config):
    """Run (or resume) the rounds; returns the list of per-round metrics."""
    check_config(config)  # every check before the run directory is written
    if config.network not in known_networks():
        raise ValueError(f"unknown network {config.network!r}; known: {known_networks()}")
    if config.control not in CONTROLS:
        raise ValueError(f"control must be one of {CONTROLS}, got {config.control!r}")
    if config.control and not config.ticket_dir:
        raise ValueError("a control run needs --ticket_dir (the ticket run to compare with)")
    if not config.out_dir:
        raise ValueError("--out_dir is required")
    if config.global_score not in GLOBAL_SCORES:
        raise ValueError(f"--global_score must be one of {GLOBAL_SCORES}, got "
                         f"{config.global_score!r}")
    if config.global_score != "magnitude" and not config.global_rate:
        raise ValueError(f"--global_score={config.global_score} ranks the weights of global "
                         "pruning: give --global_rate too (layerwise pruning ranks by |w|)")
    todo_rounds = _control_rounds(config)  # checked before the run directory is written
    run = RunDirectory(config.out_dir)
    run.prepare(dataclasses.asdict(config), defaults=dataclasses.asdict(LotteryConfig()))
    (run.path / "rounds").mkdir(exist_ok=True)

    task = (InfoNCETask if is_self_supervised(config.network) else SupervisedTask)(config)
    keras.utils.set_random_seed(config.seed)
    model = task.build()
    masks = PruningMasks(model)
    rates = {**LAYERWISE_RATES, "conv": config.conv_rate}
    # a ticket prunes at the end of each round; a control only rewinds (its masks are the
    # ticket run's, or derived from them)
    rewind = PruneWithRewind(masks, config.rewind_step, rates=rates,
                             global_rate=config.global_rate or None,
                             global_score=config.global_score,
                             prune_at_end=not config.control,
                             rewind_at_end=bool(config.control))

    if config.control:  # each round independent: those not finished, from the ticket's
        todo = [r for r in todo_rounds if not round_metrics_path(run.path, r).exists()]
        if todo:
            rewind.rewind_to_saved(model, _ticket_rewind_point(config.ticket_dir))
    else:  # each round's masks come from the one before: resume at the first unfinished
        todo = range(completed_rounds(run.path), config.rounds)
        if todo and todo[0]:
            rewind.rewind_to_saved(model, rewind_point_path(run.path))
    for r in todo:
        round_masks = _masks_for_round(config, run, masks, r)
        if round_masks is not None:
            masks.assign(round_masks)
        if config.control == "random_reinit":
            _reinitialise(model, task.build, masks, config.seed + 1000 + r)
        masks.save(masks_path(run.path, r))
        trained = KeepTrainedRound(task, run.path, r, rewind)
        task.fit(model, [trained, rewind])  # trains, keeps, then prunes (ticket) and rewinds
        if not config.control:
            masks.save(masks_path(run.path, r + 1))
        atomic_write_json(round_metrics_path(run.path, r), trained.metrics)
    rounds = (list(round_metrics_by_number(run.path).values()) if config.control
              else read_round_metrics(run.path))
    run.update_metrics(rounds=rounds, status="complete")
    return rounds


def _control_rounds(config):
    """The rounds a run trains: every one below `rounds`, or a control's `control_rounds`."""
    if not config.control_rounds:
        return list(range(config.rounds))
    if not config.control:
        raise ValueError("--control_rounds is for a control run (with --control)")
    try:
        chosen = sorted({int(part) for part in config.control_rounds.split(",")})
    except ValueError:
        raise ValueError(f"--control_rounds must be comma-separated round numbers, got "
                         f"{config.control_rounds!r}") from None
    outside = [r for r in chosen if not 0 <= r < config.rounds]
    if outside:
        raise ValueError(f"--control_rounds: round(s) {outside} outside 0..{config.rounds - 1}"
                         f" (--rounds={config.rounds})")
    return chosen


def _ticket_rewind_point(ticket_dir):
    path = rewind_point_path(ticket_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: a control starts from its ticket "
                                "run's rewind point (has the ticket run finished round 0?)")
    return path


def _masks_for_round(config, run, masks, r):
    """A ticket's round-r masks: its own (saved at the end of round r-1) or, for a
    control, derived from the ticket run's round-r masks."""
    if not config.control:
        return None if r == 0 else read_round_masks(masks, run.path, r)
    ticket = read_round_masks(masks, config.ticket_dir, r)
    if config.control == "random_prune":
        return masks.random_prune(ticket, seed=config.seed + r)
    return ticket


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
