"""Full fine-tuning of a zoo encoder on a few-label transfer task, with or without RIFLE.

What training/finetune.py runs. The target is the UCI handwritten digits (scikit-learn's
copy, 28x28): the encoders were pre-trained on Fashion-MNIST clothing, so this is a real
domain transfer with few labels. Every run of a comparison uses the same seed-chosen
labels, initial head, schedule (Adam, cosine decay over all epochs) and number
of steps; only the head treatment differs: RIFLE's M re-initialisations, or plain dropout
before the head (one of the RIFLE paper's baselines).

Besides test accuracy, a run records how far each backbone module moved from its
pre-trained weights, ||w - w0|| / ||w0|| over the module's variables, after every epoch:
RIFLE's claim is that re-initialising the head makes deeper layers move more.
"""

import dataclasses
import time

import keras
import numpy as np

from gim_zoo import registry
from gim_zoo.callbacks.rifle import RIFLE, rifle_epochs
from gim_zoo.data.digits import digits_split
from gim_zoo.data.pipelines import corrupt_images_named, eval_pipeline
from gim_zoo.data.sources import image_source
from gim_zoo.validation import check_config, integer, number
from experiments.run_directory import EpochTimer, RunDirectory


@dataclasses.dataclass
class FinetuneConfig:
    model: str = "gim-fmnist-resnet"
    random_init: bool = False
    labels_per_class: int = 20
    epochs: int = 60
    batch_size: int = 16
    learning_rate: float = 1e-3
    rifle_times: int = 0
    quiet_epochs: int = -1
    reset_head_slots: bool = False
    dropout: float = 0.0
    module: int = 0
    pool_to: int = 0
    seed: int = 0
    out_dir: str = ""
    verbose: int = 1
    dataset: str = ""
    test_fraction: float = 0.0
    data_dir: str = ""

    LIMITS = {"labels_per_class": integer(0, note="0: all"), "epochs": integer(1),
              "batch_size": integer(1), "learning_rate": number(0, low_open=True),
              "rifle_times": integer(0), "quiet_epochs": integer(-1, note="-1: a tenth"),
              "dropout": number(0, 1, high_open=True), "module": integer(0),
              "pool_to": integer(0), "seed": integer(0), "verbose": integer(0, 2)}

    HELP = {
        "dataset": "the labelled target: '' the handwritten digits (the transfer task of "
                   "the RIFLE results), or any source as train.py --dataset takes it "
                   "(fashion_mnist, stl10, tfds/NAME[:CONFIG], folder/PATH with class "
                   "subfolders), resized and converted to the encoder's input; "
                   "--labels_per_class of its train split, scored on its test split",
        "test_fraction": "folder/PATH without PATH/test: the fraction of files held out "
                         "as the test split; 0: 0.1",
        "data_dir": "tensorflow-datasets data dir (tfds/ sources) or Fashion-MNIST folder",
        "model": "zoo encoder to fine-tune (its bundled pre-trained weights)",
        "random_init": "start from a randomly initialised encoder instead (a baseline)",
        "labels_per_class": "labelled examples per class for fine-tuning (0: all; the "
                            "digits have ~900)",
        "epochs": "epochs E; the learning rate decays (cosine) to 0 over all of them",
        "learning_rate": "initial Adam learning rate, backbone and head alike",
        "rifle_times": "RIFLE: re-initialise the head M times, after epochs k*E/(M+1); 0: off",
        "quiet_epochs": "RIFLE never re-initialises in the last this-many epochs "
                        "(-1: a tenth of the epochs, at least 1)",
        "reset_head_slots": "also zero the optimizer's moments for the head at each RIFLE "
                            "re-init (default off, as in the RIFLE authors' code)",
        "dropout": "dropout rate before the head (the RIFLE paper's dropout baseline)",
        "module": "fine-tune modules 1..module and put the head on its output; 0: all",
        "pool_to": "average-pool the patch grid to k x k before the head; 0: the model's "
                   "registered probe pooling",
        "out_dir": "run directory (default: runs/finetune/<model>-<variant>-seed<seed>)",
    }

    def variant(self):
        """A short name of the head treatment, e.g. rifle2, dropout0.5, plain."""
        parts = [f"rifle{self.rifle_times}"] if self.rifle_times else []
        if self.rifle_times and self.reset_head_slots:
            parts.append("reset")
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


def finetune(config):
    """Fine-tune `config.model` on the digits; returns (and writes) the run's metrics."""
    check_config(config)  # every check before the run directory is written
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
                         "transfer task needs a 28x28 grayscale (Fashion-MNIST) encoder: "
                         "give --dataset (a labelled source) instead")
    quiet = None if config.quiet_epochs < 0 else config.quiet_epochs
    rifle_epochs(config.epochs, config.rifle_times, quiet)  # refuse a bad plan up front
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
    out = config.out_dir or (f"runs/finetune/{source.slug + '/' if source else ''}"
                             f"{spec.name}-{config.variant()}-seed{config.seed}")
    run = RunDirectory(out)
    run.prepare(dataclasses.asdict(config), defaults=dataclasses.asdict(FinetuneConfig()))
    done = run.read_metrics()
    if "test_accuracy" in done:
        return done  # finished earlier: a whole run is short, so it resumes by re-running

    keras.utils.set_random_seed(config.seed)
    if source:
        train, test = source.few_labels(config.labels_per_class, config.seed, config.data_dir)
        with corrupt_images_named():
            train_x, train_y = (np.concatenate(a) for a in zip(
                *eval_pipeline(train, source, 256).as_numpy_iterator()))
        test_data, num_classes = eval_pipeline(test, source, 256), (
            source.num_classes or train.num_classes)
    else:
        train_x, train_y, test_x, test_y = digits_split(config.labels_per_class, config.seed)
        test_data, num_classes = (test_x, test_y), 10
    encoder = _encoder(spec, config)
    module = config.module or encoder.num_modules
    pool_to = config.pool_to or spec.probe_pool_to
    # The head's initial weights depend only on the seed, whatever the variant.
    keras.utils.set_random_seed(config.seed)
    model = build_finetune_model(encoder, module, pool_to, config.dropout, num_classes)

    steps_per_epoch = int(np.ceil(len(train_x) / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=steps_per_epoch * config.epochs)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    tracker = ModuleDistanceTracker(encoder, module)
    callbacks = [tracker]
    rifle = None
    if config.rifle_times:
        rifle = RIFLE("head", config.epochs, config.rifle_times, quiet,
                      reset_optimizer_slots=config.reset_head_slots, seed=config.seed,
                      verbose=config.verbose)
        callbacks.insert(0, rifle)
    callbacks += [EpochTimer(), keras.callbacks.CSVLogger(str(run.history_path)),
                  keras.callbacks.TensorBoard(str(run.logs_dir))]

    start = time.perf_counter()
    model.fit(train_x, train_y, batch_size=config.batch_size, epochs=config.epochs,
              shuffle=True, callbacks=callbacks, verbose=config.verbose)
    seconds = time.perf_counter() - start
    with corrupt_images_named():
        test_loss, test_accuracy = (model.evaluate(test_data, verbose=0)
                                    if source else model.evaluate(*test_data, batch_size=256,
                                                                  verbose=0))
    return run.update_metrics(
        model=spec.name, variant=config.variant(), seed=config.seed,
        rifle_times=config.rifle_times, dropout=config.dropout,
        random_init=config.random_init, labels_per_class=config.labels_per_class,
        train_examples=len(train_x), test_examples=test.count if source else len(test_x),
        **({"dataset": source.name} if source else {}),
        test_accuracy=float(test_accuracy), test_loss=float(test_loss),
        module_distance=tracker.distances(),
        rifle_reinits=rifle.log if rifle else [], seconds=seconds,
        optimizer_steps=int(model.optimizer.iterations.numpy()),
    )


def _encoder(spec, config):
    if config.random_init:
        keras.utils.set_random_seed(config.seed)
        return spec.build_encoder()
    from gim_zoo.zoo import load

    return load(spec.name)
