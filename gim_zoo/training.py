"""Train a registry model into a resumable run directory (what training/train.py runs).

`TrainConfig` is the whole command line: its fields become the script's flags, its JSON
is the run's config.json, and a run directory only resumes the same configuration.
"""

import dataclasses
import math
import os

import keras
import numpy as np

from gim_zoo import registry
from gim_zoo.data import image_pipeline, images_only, load_fashion_mnist, load_stl10
from gim_zoo.model_folder import load_weights_checked
from gim_zoo.models.probe import balanced_subset
from gim_zoo.plots import plot_loss_curves
from gim_zoo.runs import EpochTimer, ResumableBackup, RunDirectory, atomic_save_weights


@dataclasses.dataclass
class TrainConfig:
    model: str = "gim-fmnist-resnet"
    out_dir: str = ""
    epochs: int = 0  # 0: the registry's epochs for this model
    batch_size: int = 0  # 0: the registry's
    learning_rate: float = 0.0  # 0: the registry's
    seed: int = 0
    train_module: int = 0  # 0: all modules at once; k: only module k
    data_dir: str = ""
    max_examples: int = 0  # 0: the whole training split; n: the first n (quick runs, tests)
    labels_per_class: int = 0  # supervised only; 0: every label
    init_from: str = ""  # run directory whose encoder weights start this run
    eval_examples: int = 2000  # test images used for the per-epoch validation loss
    stem_width: int = 0  # encoder overrides, 0 / "" keep the registry's
    widths: str = ""
    blocks: str = ""
    verbose: int = 1

    HELP = {
        "model": "registry name, e.g. gim-fmnist-resnet, cpc-fmnist-resnet, "
                 "supervised-fmnist-resnet",
        "out_dir": "run directory (created; re-running the same command resumes it)",
        "train_module": "train only this module (1-based); earlier modules run frozen",
        "data_dir": "dataset folder: Fashion-MNIST IDX files or a tfds data dir; for audio "
                    "models the speech corpus (default data/speech-corpus)",
        "widths": "comma-separated module widths overriding the registry's",
        "blocks": "comma-separated blocks per module overriding the registry's",
        "init_from": "start from this run directory's encoder weights (module-at-a-time: "
                     "train module 2 from the module-1 run, and so on)",
    }

    def resolved(self):
        """Fill registry defaults so config.json records the values actually used."""
        spec = registry.get(self.model)
        if not self.out_dir:
            raise ValueError("--out_dir is required")
        return dataclasses.replace(
            self,
            epochs=self.epochs or spec.epochs,
            batch_size=self.batch_size or spec.batch_size,
            learning_rate=self.learning_rate or spec.learning_rate,
        )

    def encoder_overrides(self):
        overrides = {}
        if self.stem_width:
            overrides["stem_width"] = self.stem_width
        for key in ("widths", "blocks"):
            value = getattr(self, key)
            if value:
                overrides[key] = tuple(int(v) for v in value.split(","))
        return overrides


def load_split(dataset, split, data_dir=None):
    """(images, labels) numpy arrays for Fashion-MNIST; a tf.data.Dataset for STL-10."""
    if dataset == "fashion_mnist":
        return load_fashion_mnist(split, data_dir or None)
    if dataset == "stl10":
        return load_stl10(split, data_dir or None), None
    raise ValueError(f"unknown dataset {dataset!r}")


def _history_seconds(history_csv):
    from gim_zoo.plots import read_history

    if not os.path.exists(history_csv):
        return 0.0
    return float(sum(read_history(history_csv).get("epoch_seconds", [])))


def train(config):
    """Fit the configured model; returns metrics.json's contents. Resumes a killed run."""
    config = config.resolved()
    spec = registry.get(config.model)
    run = RunDirectory(config.out_dir)
    run.prepare(dataclasses.asdict(config), defaults=dataclasses.asdict(TrainConfig()))
    keras.utils.set_random_seed(config.seed)

    supervised = spec.objective == "supervised"
    if spec.is_audio:
        return _train_audio(config, spec, run)
    # Self-supervised STL-10 trains on its 100k unlabelled images, as the paper.
    train_split = "unlabelled" if spec.dataset == "stl10" and not supervised else "train"
    train_images, train_labels = load_split(spec.dataset, train_split, config.data_dir)
    test_images, test_labels = load_split(spec.dataset, "test", config.data_dir)
    if train_labels is not None:
        if supervised and config.labels_per_class:
            keep = balanced_subset(train_labels, config.labels_per_class, config.seed)
            train_images, train_labels = train_images[keep], train_labels[keep]
        if config.max_examples:
            train_images = train_images[: config.max_examples]
            train_labels = train_labels[: config.max_examples]
    n_val = config.eval_examples or None
    train_ds = image_pipeline(train_images, train_labels, spec.dataset, training=True,
                              batch_size=config.batch_size, seed=config.seed)
    test_ds = image_pipeline(test_images, test_labels, spec.dataset, batch_size=256)
    if test_labels is None:  # a tf.data split (STL-10)
        val_ds = image_pipeline(test_images.take(n_val or -1), None, spec.dataset,
                                batch_size=256)
    else:
        val_ds = image_pipeline(test_images[:n_val], test_labels[:n_val], spec.dataset,
                                batch_size=256)
    if not supervised:
        train_ds, val_ds, test_ds = images_only(train_ds), images_only(val_ds), images_only(test_ds)

    model = spec.build_model(config.encoder_overrides(), config.train_module or None,
                             seed=config.seed)
    return _fit(config, spec, run, model, train_ds, val_ds, test_ds, _count(train_images))


def _train_audio(config, spec, run):
    """Self-supervised training on the speech corpus: random 20,480-sample crops."""
    from gim_zoo.data.speech_corpus import DEFAULT_DIR, crops_dataset, load_split as speech

    if spec.objective == "supervised":
        raise ValueError("supervised audio models are not implemented")
    corpus = config.data_dir or DEFAULT_DIR
    crop = spec.encoder["crop_samples"]
    audio, speakers, labels = speech(corpus, "train")
    if config.max_examples:
        audio, speakers, labels = (audio[: config.max_examples],
                                   speakers[: config.max_examples],
                                   labels[: config.max_examples])
    test_audio, test_speakers, test_labels = speech(corpus, "test")

    def waves(ds):
        return ds.map(lambda wave, speaker, phones: wave)

    train_ds = waves(crops_dataset(audio, speakers, labels, crop, batch_size=config.batch_size,
                                   training=True, seed=config.seed))
    test_ds = waves(crops_dataset(test_audio, test_speakers, test_labels, crop,
                                  batch_size=config.batch_size, training=False))
    model = spec.build_model(config.encoder_overrides(), config.train_module or None,
                             seed=config.seed)
    return _fit(config, spec, run, model, train_ds, test_ds, test_ds, len(audio))


def _fit(config, spec, run, model, train_ds, val_ds, test_ds, train_examples):
    """Compile, fit with resumable backups, write weights, metrics and the loss plot."""
    supervised = spec.objective == "supervised"
    optimizer = keras.optimizers.Adam(config.learning_rate)
    if supervised:
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        model.compile(optimizer)
    if config.init_from and not run.has_backup:
        load_weights_checked(model.encoder, RunDirectory(config.init_from).encoder_weights_path)

    # Order matters: the history row is written before the backup, so a kill between the
    # two repeats an epoch (read_history keeps its last row) rather than losing a row.
    callbacks = [
        EpochTimer(),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(run.history_path), append=True),
        keras.callbacks.TensorBoard(str(run.logs_dir), write_graph=False),
        ResumableBackup(run.backup_dir),
    ]
    history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                        callbacks=callbacks, verbose=config.verbose, shuffle=False)
    last = {k: float(v[-1]) for k, v in history.history.items()}

    if not all(math.isfinite(v) for v in last.values()):
        # The backup holds the last finite epoch; keep it and the final weights untouched.
        run.update_metrics(status="stopped: non-finite loss", last_logs=last)
        raise FloatingPointError(
            f"training produced a non-finite loss ({last}); the last good checkpoint in "
            f"{run.backup_dir} was kept, final weights were not written"
        )

    atomic_save_weights(model, run.weights_path)
    encoder = model.encoder
    atomic_save_weights(encoder, run.encoder_weights_path)
    final = {f"test_{k}": float(v) for k, v in
             model.evaluate(test_ds, verbose=0, return_dict=True).items()}
    epochs_done = _epochs_in_history(run)
    metrics = run.update_metrics(
        status="complete" if epochs_done >= config.epochs else "incomplete",
        model=config.model,
        objective=spec.objective,
        dataset=spec.dataset,
        seed=config.seed,
        epochs_completed=epochs_done,
        train_examples=train_examples,
        train_seconds=round(_history_seconds(run.history_path), 1),
        encoder_parameters=int(encoder.count_params()),
        final_train_logs=last or run.read_metrics().get("final_train_logs", {}),
        **final,
    )
    if os.path.exists(run.history_path):
        plot_loss_curves(run.history_path, run.loss_plot_path, title=config.model)
    return metrics


def _epochs_in_history(run):
    from gim_zoo.plots import read_history

    if not os.path.exists(run.history_path):
        return 0
    return len(read_history(run.history_path).get("epoch", []))


def _count(images):
    return int(len(images)) if isinstance(images, np.ndarray) else None
