"""Full fine-tuning of a zoo encoder on a few-label transfer task, with or without RIFLE.

What training/finetune.py runs. Targets: the UCI handwritten digits (scikit-learn's copy,
28x28; the encoders were pre-trained on Fashion-MNIST clothing, so a real domain
transfer), Fashion-MNIST itself with a class-balanced fraction of its labels (the
encoders saw its images, never its labels), or any labelled source (`--dataset`, as
train.py takes it), resized and converted to the encoder's input. Every run of a comparison uses the same
seed-chosen labels, initial head, schedule (cosine decay over all epochs) and number of
steps; only the head treatment differs: RIFLE's M re-initialisations (optionally with
the authors' cyclic head learning rate), or plain dropout before the head (one of the
RIFLE paper's baselines).

Two regimes: Adam (the original digits table), or `--optimizer=sgd`, the RIFLE authors'
torch.optim.SGD (momentum, L2 weight decay through the gradient: HeadRateSGD). With
`--resumable` each epoch's batches are a function of (seed, epoch) (epochs_pipeline)
and the run is backed up after every epoch, so a killed run resumes bit-identically and
every variant of a seed sees the same batches.

Besides test accuracy, a run records how far each backbone module moved from its
pre-trained weights, ||w - w0|| / ||w0|| over the module's variables, after every epoch:
RIFLE's claim is that re-initialising the head makes deeper layers move more.
"""

import contextlib
import dataclasses
import shutil
import time

import keras
import numpy as np
from keras import ops

from gim_zoo import registry
from gim_zoo.callbacks.backup import ResumableBackup
from gim_zoo.callbacks.rifle import RIFLE, HeadRateSGD, rifle_epochs
from gim_zoo.data.digits import digits_split
from gim_zoo.data.pipelines import corrupt_images_named, eval_pipeline
from gim_zoo.data.sources import FASHION_MNIST, image_source
from gim_zoo.validation import check_config, integer, number
from .run_directory import EpochTimer, RunDirectory, SelfKill

OPTIMIZERS = ("adam", "sgd")


def _digits_split(config):
    return digits_split(config.labels_per_class, config.seed)


def _fashion_mnist_split(config):
    from gim_zoo.models.probe import balanced_subset

    train = FASHION_MNIST.load("train", config.data_dir or None)
    test = FASHION_MNIST.load("test", config.data_dir or None)
    keep = balanced_subset(train.labels, config.labels_per_class or None, config.seed)
    return train.images[keep], train.labels[keep], test.images, test.labels


@dataclasses.dataclass(frozen=True)
class Target:
    """A --target: where its few labels come from, said once (no branches on its name).

    split(config) -> (train_x, train_y, test_x, test_y) in memory; run_tag: the part of a
    default run directory naming the labels used ('' for the digits, the original table);
    augmentable: random crops and flips keep the label (clothing yes, digits no);
    labelled_images: the labelled training images it has in all (the share in reports)."""
    name: str
    split: object
    run_tag: str
    augmentable: bool
    labelled_images: int


TARGETS = {t.name: t for t in (
    Target("digits", _digits_split, "", False, 0),
    Target(FASHION_MNIST.name, _fashion_mnist_split, "fmnist", True, 60_000),
)}


@dataclasses.dataclass
class FinetuneConfig:
    model: str = "gim-fmnist-resnet"
    random_init: bool = False
    target: str = "digits"
    labels_per_class: int = 20
    epochs: int = 60
    batch_size: int = 16
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    rifle_times: int = 0
    quiet_epochs: int = -1
    reset_head_slots: bool = False
    cyclic_head_lr: bool = False
    dropout: float = 0.0
    augment: bool = False
    module: int = 0
    pool_to: int = 0
    resumable: bool = False
    eval_examples: int = 0
    seed: int = 0
    data_dir: str = ""
    out_dir: str = ""
    verbose: int = 1
    dataset: str = ""
    test_fraction: float = 0.0

    LIMITS = {"labels_per_class": integer(0, note="0: all"), "epochs": integer(1),
              "batch_size": integer(1), "learning_rate": number(0, low_open=True),
              "momentum": number(0, 1, high_open=True), "weight_decay": number(0),
              "rifle_times": integer(0), "quiet_epochs": integer(-1, note="-1: a tenth"),
              "dropout": number(0, 1, high_open=True), "module": integer(0),
              "pool_to": integer(0), "eval_examples": integer(0, note="0: all"),
              "seed": integer(0), "verbose": integer(0, 2)}

    HELP = {
        "dataset": "the labelled target instead of --target: any source as train.py "
                   "--dataset takes it (fashion_mnist, stl10, tfds/NAME[:CONFIG], "
                   "folder/PATH with class subfolders), resized and converted to the "
                   "encoder's input; --labels_per_class of its train split, scored on its "
                   "test split",
        "test_fraction": "folder/PATH without PATH/test: the fraction of files held out "
                         "as the test split; 0: 0.1",
        "data_dir": "tensorflow-datasets data dir (tfds/ sources) or Fashion-MNIST folder",
        "model": "zoo encoder to fine-tune (its bundled pre-trained weights)",
        "random_init": "start from a randomly initialised encoder instead (a baseline)",
        "target": "digits (UCI handwritten digits, a domain transfer) or fashion_mnist "
                  "(a class-balanced fraction of its labels; tested on its 10,000 test images)",
        "labels_per_class": "labelled training images per class (digits: 0 = all ~900 of "
                            "the training half; fashion_mnist: 600 = 10% of the labels, "
                            "60 = 1%, 0 = all)",
        "epochs": "epochs E; the learning rate decays (cosine) to 0 over all of them",
        "optimizer": "adam, or sgd: the RIFLE authors' torch-style SGD with --momentum and "
                     "--weight_decay (L2 added to the gradient)",
        "learning_rate": "initial learning rate of the cosine schedule, backbone and head "
                         "alike (except --cyclic_head_lr)",
        "momentum": "sgd: the momentum coefficient (the RIFLE authors use 0.9)",
        "weight_decay": "sgd: L2 weight decay added to every gradient (torch.optim.SGD's "
                        "weight_decay; the RIFLE authors use 1e-4)",
        "cyclic_head_lr": "sgd with RIFLE: the head's learning rate restarts its cosine from "
                          "--learning_rate at every re-init (the authors' option); the "
                          "backbone keeps the run's one cosine",
        "augment": "fashion_mnist: random +-2 pixel crops and horizontal flips (the "
                   "encoders' pre-training augmentation); needs --resumable",
        "resumable": "feed each epoch's batches as a function of (seed, epoch) and back up "
                     "after every epoch: a killed run resumes bit-identically, and every "
                     "variant of a seed sees the same batches",
        "eval_examples": "test images used (0: all; quick runs and tests)",
        "rifle_times": "RIFLE: re-initialise the head M times, after epochs k*E/(M+1); 0: off",
        "quiet_epochs": "RIFLE never re-initialises in the last this-many epochs "
                        "(-1: a tenth of the epochs, at least 1)",
        "reset_head_slots": "also zero the optimizer's moments for the head at each RIFLE "
                            "re-init (default off, as in the RIFLE authors' code)",
        "dropout": "dropout rate before the head (the RIFLE paper's dropout baseline)",
        "module": "fine-tune modules 1..module and put the head on its output; 0: all",
        "pool_to": "average-pool the patch grid to k x k before the head; 0: the model's "
                   "registered probe pooling",
        "out_dir": "run directory (default: runs/finetune/<model>-<variant>-seed<seed>; "
                   "fashion_mnist: <model>-fmnist<labels per class>-<variant>-seed<seed>)",
    }

    def check(self):
        """Refuse bad settings before a run directory exists."""
        check_config(self)  # the numeric ranges (LIMITS)
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {tuple(TARGETS)}, got {self.target!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.optimizer != "sgd" and (self.weight_decay or self.cyclic_head_lr):
            raise ValueError("--weight_decay and --cyclic_head_lr are options of "
                             "--optimizer=sgd (the RIFLE authors' regime)")
        if self.cyclic_head_lr and not self.rifle_times:
            raise ValueError("--cyclic_head_lr restarts the head's rate at RIFLE's re-inits: "
                             "it needs --rifle_times >= 1")
        if self.augment and (not TARGETS[self.target].augmentable or not self.resumable):
            raise ValueError("--augment is for --target=fashion_mnist with --resumable "
                             "(flips do not preserve a digit's label)")
        if self.dataset and (self.target != FinetuneConfig.target or self.resumable):
            raise ValueError("--dataset names the target itself: leave --target at its "
                             "default, and --resumable is for --target (in-memory images)")

    def default_out_dir(self, model, source=None):
        if source is not None:
            return f"runs/finetune/{source.slug}/{model}-{self.variant()}-seed{self.seed}"
        tag = TARGETS[self.target].run_tag
        target = f"{tag}{self.labels_per_class or 'all'}-" if tag else ""
        return f"runs/finetune/{model}-{target}{self.variant()}-seed{self.seed}"

    def variant(self):
        """A short name of the head treatment, e.g. rifle2, dropout0.5, plain."""
        parts = [f"rifle{self.rifle_times}"] if self.rifle_times else []
        if self.rifle_times and self.reset_head_slots:
            parts.append("reset")
        if self.rifle_times and self.cyclic_head_lr:
            parts.append("cyclic")
        if self.dropout:
            parts.append(f"dropout{self.dropout:g}")
        if self.random_init:
            parts.insert(0, "scratch")
        return "-".join(parts) or "plain"


def build_finetune_model(encoder, module, pool_to, dropout=0.0, num_classes=10):
    """images -> encoder modules 1..module -> pool k x k -> [dropout] -> Dense head.

    A plain functional model sharing the encoder's variables (fine-tuning trains them)."""
    features_model = encoder.feature_model(module, pool_to=pool_to)
    x = features_model.output
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="head")(x)
    return keras.Model(features_model.input, outputs, name="finetune")


def module_distances(encoder, reference):
    """[||w - w0|| / ||w0||] per encoder module, w0 the `reference` weight lists."""
    distances = []
    for module, ref in zip(encoder.gim_modules, reference):
        now = [np.asarray(v) for v in module.get_weights()]
        diff = np.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(now, ref)))
        norm = np.sqrt(sum(float(np.sum(b**2)) for b in ref))
        distances.append(diff / norm)
    return distances


class ModuleDistanceTracker(keras.callbacks.Callback):
    """Adds `module{k}_distance` (relative distance from the pre-trained weights) to the
    epoch logs, so history.csv and TensorBoard record how far each module moved."""

    def __init__(self, encoder, modules):
        super().__init__()
        self.encoder = encoder
        self.modules = modules
        self.reference = [[np.array(v) for v in m.get_weights()] for m in encoder.gim_modules]

    def distances(self):
        return module_distances(self.encoder, self.reference)[: self.modules]

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            for k, d in enumerate(self.distances(), start=1):
                logs[f"module{k}_distance"] = d


def target_split(config):
    """(train_x, train_y, test_x, test_y) of the run's target, float32 images 0..255."""
    train_x, train_y, test_x, test_y = TARGETS[config.target].split(config)
    n = config.eval_examples or len(test_x)
    return (train_x.astype("float32"), train_y.astype("int32"),
            test_x[:n].astype("float32"), test_y[:n].astype("int32"))


def source_split(config, source):
    """(train_x, train_y, test batches, test count, classes) of a --dataset target: the
    seed's labels_per_class training images in memory, the test split streamed."""
    train, test = source.few_labels(config.labels_per_class, config.seed, config.data_dir)
    with corrupt_images_named():
        train_x, train_y = (np.concatenate(a) for a in zip(
            *eval_pipeline(train, source, 256).as_numpy_iterator()))
    return (train_x, train_y, eval_pipeline(test, source, 256), test.count,
            source.num_classes or train.num_classes)


def finetune(config):
    """Fine-tune `config.model` on the target; returns (and writes) the run's metrics."""
    config.check()  # every check before the run directory is written
    spec = registry.get(config.model)
    if spec.modality.name != "image":
        raise ValueError(f"{spec.name} takes {spec.modality.inputs}; fine-tuning here is "
                         "for image encoders")
    size, channels = spec.encoder["image_size"], spec.encoder["channels"]
    source = None
    if config.dataset:  # checked (files listed, labels present) before anything is written
        source = image_source(config.dataset, config.test_fraction).fitted(
            size, channels, like=spec.dataset)
        source.check(("train", "test"), config.data_dir, labels=("train", "test"))
    elif (size, channels) != (28, 1):
        raise ValueError(f"{spec.name} takes {size}x{size}x{channels} images; the digits "
                         "and Fashion-MNIST targets need a 28x28 grayscale (Fashion-MNIST) "
                         "encoder: give --dataset (a labelled source) instead")
    quiet = None if config.quiet_epochs < 0 else config.quiet_epochs
    rifle_epochs(config.epochs, config.rifle_times, quiet)  # refuse a bad plan up front
    run = RunDirectory(config.out_dir or config.default_out_dir(spec.name, source))
    with run.lock() if config.resumable else contextlib.nullcontext():
        run.prepare(dataclasses.asdict(config), defaults=dataclasses.asdict(FinetuneConfig()))
        done = run.read_metrics()
        if "test_accuracy" in done:
            return done  # finished earlier
        if config.resumable:
            run.check_backup()  # a damaged backup is refused, never resumed
        return _finetune(config, spec, run, quiet, source)


def _finetune(config, spec, run, quiet, source=None):
    keras.utils.set_random_seed(config.seed)
    if source:
        train_x, train_y, test_data, test_count, num_classes = source_split(config, source)
    else:
        train_x, train_y, test_x, test_y = target_split(config)
        test_data, test_count, num_classes = (test_x, test_y), len(test_x), 10
    encoder = _encoder(spec, config)
    module = config.module or encoder.num_modules
    pool_to = config.pool_to or spec.probe_pool_to
    # The head's initial weights depend only on the seed, whatever the variant.
    keras.utils.set_random_seed(config.seed)
    model = build_finetune_model(encoder, module, pool_to, config.dropout, num_classes)

    if config.resumable:
        steps_per_epoch = len(train_x) // config.batch_size
    else:
        steps_per_epoch = int(np.ceil(len(train_x) / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=steps_per_epoch * config.epochs)
    rifle = None
    if config.rifle_times:
        rifle = RIFLE("head", config.epochs, config.rifle_times, quiet,
                      reset_optimizer_slots=config.reset_head_slots, seed=config.seed,
                      verbose=config.verbose)
    if config.optimizer == "sgd":
        head = {"head_variables": model.get_layer("head").weights,
                "head_learning_rate": rifle.cyclic_head_schedule(
                    config.learning_rate, steps_per_epoch)} if config.cyclic_head_lr else {}
        optimizer = HeadRateSGD(schedule, momentum=config.momentum, l2=config.weight_decay,
                                **head)
    else:
        optimizer = keras.optimizers.Adam(schedule)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    tracker = ModuleDistanceTracker(encoder, module)
    # Order: the re-init before the history row, the history row before the backup (a
    # backup holds the head as re-initialised; a kill between the two repeats an epoch).
    callbacks = ([rifle] if rifle else []) + [
        tracker, EpochTimer(),
        keras.callbacks.CSVLogger(str(run.history_path), append=config.resumable),
        keras.callbacks.TensorBoard(str(run.logs_dir), write_graph=False)]
    start = time.perf_counter()
    if config.resumable:
        from gim_zoo.data.pipelines import epochs_pipeline

        backup = ResumableBackup(run.backup_dir, recovery=run.recovery)
        callbacks.append(backup)
        if SelfKill.from_env():  # fault-injection tests only
            callbacks.append(SelfKill.from_env())
        first = backup.initial_epoch
        train = epochs_pipeline(train_x, train_y, batch_size=config.batch_size,
                                seed=config.seed, epochs=config.epochs,
                                start_epoch=min(first, config.epochs - 1),
                                augment=config.augment)
        model.fit(train, epochs=config.epochs, initial_epoch=first,
                  steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                  verbose=config.verbose, shuffle=False)
    else:
        model.fit(train_x, train_y, batch_size=config.batch_size, epochs=config.epochs,
                  shuffle=True, callbacks=callbacks, verbose=config.verbose)
    seconds = time.perf_counter() - start
    with corrupt_images_named():
        test_loss, test_accuracy = (model.evaluate(test_data, verbose=0) if source else
                                    model.evaluate(*test_data, batch_size=256, verbose=0))
    metrics = run.update_metrics(
        model=spec.name, variant=config.variant(), seed=config.seed,
        target=source.name if source else config.target, optimizer=config.optimizer,
        rifle_times=config.rifle_times, cyclic_head_lr=config.cyclic_head_lr,
        dropout=config.dropout,
        random_init=config.random_init, labels_per_class=config.labels_per_class,
        train_examples=len(train_x), test_examples=test_count,
        **({"dataset": source.name} if source else {}),
        test_accuracy=float(test_accuracy), test_loss=float(test_loss),
        module_distance=tracker.distances(),
        rifle_reinits=rifle.log if rifle else [], seconds=seconds,
        optimizer_steps=int(ops.convert_to_numpy(model.optimizer.iterations)),
        pool_to=pool_to, module=module,
    )
    if config.resumable:  # finished: the metrics say so, the backup has done its job
        shutil.rmtree(run.backup_dir, ignore_errors=True)
    return metrics


def _encoder(spec, config):
    if config.random_init:
        keras.utils.set_random_seed(config.seed)
        return spec.build_encoder()
    from gim_zoo.zoo import load

    return load(spec.name)
