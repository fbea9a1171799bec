"""Train a registry model into a resumable run directory (what training/train.py runs).

`TrainConfig` is the whole command line: its fields become the script's flags, its JSON
is the run's config.json, and a run directory only resumes the same configuration.
"""

import contextlib
import dataclasses
import math
import os
import sys

import keras

from gim_zoo import registry
from gim_zoo.data import images_only, load_speech
from gim_zoo.data.pipelines import corrupt_images_named, eval_pipeline, train_pipeline
from gim_zoo.data.sources import FolderSource, image_source, source_from_string
from gim_zoo.presets import load_weights_checked
from gim_zoo.validation import check_int
from gim_zoo.precision import check_policy, policy_scope
from gim_zoo.models.probe import balanced_subset
from gim_zoo.callbacks.backup import ResumableBackup, save_weights_as_worker
from .plots import plot_loss_curves
from .run_directory import EpochTimer, RunDirectory, SelfKill

STRATEGIES = ("", "mirrored", "multi_worker")


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
    strategy: str = ""  # "": one device; "mirrored"; "multi_worker" (TF_CONFIG)
    cpu_devices: int = 0  # >1: split the CPU into this many logical devices
    verbose: int = 1
    final_eval_examples: int = 0  # 0: the whole test split
    dataset: str = ""  # "": the model's registered data source
    image_size: int = 0  # 0: the model's registered input size
    channels: int = 0  # 0: the model's registered channels; 1 grayscale, 3 RGB
    test_fraction: float = 0.0  # folders without test/: 0 holds out 10%
    # GPU-ready training (docs/gpu.md): dtype policy, XLA, steps per tf.function call
    mixed_precision: str = ""  # "", "mixed_float16" or "mixed_bfloat16"
    jit_compile: str = "auto"  # "auto" (Keras: XLA on GPU, off on CPU), "true", "false"
    steps_per_execution: int = 1

    HELP = {
        "model": "registry name, e.g. gim-fmnist-resnet, cpc-fmnist-resnet, "
                 "supervised-fmnist-resnet (`python -m gim_zoo list`)",
        "out_dir": "run directory (created; re-running the same command resumes it, or says "
                   "that the run is complete)",
        "epochs": "training epochs; 0: the model's registered number (`python -m gim_zoo "
                  "info MODEL`, e.g. 16 for gim-fmnist-resnet). Raising it on a finished "
                  "run trains the extra epochs",
        "batch_size": "images (or audio crops) per batch, all replicas together; 0: the "
                      "model's registered batch size",
        "learning_rate": "Adam learning rate; 0: the model's registered one",
        "seed": "random seed: initial weights, data order and augmentation, InfoNCE "
                "negatives, label subsets",
        "max_examples": "train on the first N training examples only (quick runs, tests); "
                        "0: the whole training split",
        "labels_per_class": "supervised models: train on this many labelled images per "
                            "class (class-balanced subset); 0: every label",
        "eval_examples": "test examples for the validation loss after every epoch; 0: all",
        "final_eval_examples": "test examples for the final evaluation written to "
                               "metrics.json (image models: the first N; audio: the first N "
                               "utterances); 0: the whole test split",
        "stem_width": "channels of the encoder's stem convolution; 0: the registry's",
        "verbose": "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch",
        "train_module": "train only this module (1-based); earlier modules run frozen",
        "data_dir": "dataset folder: Fashion-MNIST IDX files or a tfds data dir; for audio "
                    "models the speech corpus (default data/speech-corpus)",
        "widths": "comma-separated module widths overriding the registry's",
        "blocks": "comma-separated blocks per module overriding the registry's",
        "init_from": "start from this run directory's encoder weights (module-at-a-time: "
                     "train module 2 from the module-1 run, and so on)",
        "strategy": "tf.distribute strategy: '' (one device), 'mirrored' (every GPU, or "
                    "--cpu_devices logical CPUs) or 'multi_worker' (one process per worker, "
                    "cluster from TF_CONFIG; the chief alone writes the run directory). "
                    "--batch_size is the global batch, split evenly over the replicas; "
                    "InfoNCE negatives are drawn within each replica's share",
        "cpu_devices": "split the CPU into this many logical devices (tf.distribute on a "
                       "CPU-only machine: tests, benchmarks); 0 leaves it whole",
        "dataset": "the data to train on; '': the model's own (`python -m gim_zoo info "
                   "MODEL`). A built-in (fashion_mnist, stl10), tfds/NAME[:CONFIG] (a "
                   "tensorflow-datasets image dataset: tfds/cifar10, tfds/stl10, in "
                   "--data_dir) or folder/PATH (PNG / JPEG files; class subfolders are "
                   "labels, a flat folder is unlabelled; PATH/train and PATH/test are the "
                   "splits when present), e.g. --dataset=folder/data/my_images. Images are "
                   "resized and converted to the model's input (see --image_size, "
                   "--channels); docs/own-images.md",
        "image_size": "the model's input size in pixels (square), e.g. 32 or 96; the "
                      "encoder's patch grid keeps its registered 7x7 (patches scale with "
                      "the image); 0: the registered size (28 for Fashion-MNIST models, 64 "
                      "for STL-10 models)",
        "channels": "the model's input channels: 1 (grayscale: RGB images are converted) or "
                    "3 (RGB: grayscale images are replicated); 0: the registered (1)",
        "test_fraction": "folder/PATH without PATH/test: the fraction of its files held out "
                         "as the test split (the same files for every run and seed); 0: "
                         "0.1. Recorded in config.json",
        "mixed_precision": "Keras dtype policy: '' (float32), 'mixed_float16' (with loss "
                           "scaling; GPUs) or 'mixed_bfloat16' (GPUs, TPUs, recent CPUs); "
                           "InfoNCE scores, softmax and losses stay float32 (docs/gpu.md)",
        "jit_compile": "XLA-compile the train step: 'auto' (Keras's default: on with a GPU, "
                       "off on CPU and under --strategy), 'true' or 'false'",
        "steps_per_execution": "train steps per tf.function call (fewer Python round trips "
                               "on a GPU); callbacks see every Nth batch",
    }

    def data_defaults(self, spec):
        """The data settings a run of spec.name uses when none is given (config.json of
        runs made before these settings existed means these)."""
        image = spec.modality.name == "image"
        return {"dataset": spec.dataset.name, "test_fraction": 0.0,
                "image_size": spec.encoder["image_size"] if image else 0,
                "channels": spec.encoder["channels"] if image else 0}

    def source(self):
        """The data source this run reads (an image source fitted to the model's input)."""
        spec = registry.get(self.model)
        if spec.modality.name != "image":
            return source_from_string(self.dataset or spec.dataset)
        source = image_source(self.dataset or spec.dataset, self.test_fraction)
        return source.fitted(self.image_size or spec.encoder["image_size"],
                             self.channels or spec.encoder["channels"], like=spec.dataset)

    def resolved(self):
        """Fill registry defaults so config.json records the values actually used.

        Checks every value first (ValueError naming the flag), so a bad command line
        writes nothing: no config.json that would then block the corrected command."""
        spec = registry.get(self.model)
        if not self.out_dir:
            raise ValueError("--out_dir is required")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        for name in ("epochs", "batch_size", "max_examples", "labels_per_class",
                     "eval_examples", "stem_width", "cpu_devices", "train_module", "seed",
                     "final_eval_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0 (0: the default), got "
                                 f"{getattr(self, name)}")
        check_int("--verbose", self.verbose, 0, 2, note="0 silent, 1 progress bar, 2 a line "
                  "per epoch")
        check_policy(self.mixed_precision)
        xla_setting(self)  # a ValueError for anything but auto / true / false
        if self.steps_per_execution < 1:
            raise ValueError(f"--steps_per_execution must be >= 1, got "
                             f"{self.steps_per_execution}")
        if self.strategy and (xla_setting(self) is True or self.steps_per_execution > 1):
            # Keras 3.15 under tf.distribute, a plain Dense model included: XLA fails
            # ("resource ... located in device CPU:1 from device CPU:0", XLA's known
            # issue with variables on another device; Keras's "auto" keeps it off under
            # a strategy), and so does its multi-step loop ("You must feed a value for
            # placeholder tensor 'while/cond/Placeholder'")
            raise ValueError(f"--strategy={self.strategy} takes neither --jit_compile=true "
                             "nor --steps_per_execution > 1 (Keras's tf.distribute training "
                             "fails with them); leave them at auto and 1 (docs/gpu.md)")
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            raise ValueError(f"--learning_rate must be a finite number >= 0 (0: the "
                             f"registry's), got {self.learning_rate}")
        overrides = self.encoder_overrides()
        modules = len(overrides.get("widths", spec.encoder.get("widths", ())))
        if modules and self.train_module > modules:
            raise ValueError(f"--train_module must be between 0 and {modules} (the encoder's "
                             f"modules), got {self.train_module}")
        config = dataclasses.replace(
            self,
            epochs=self.epochs or spec.epochs,
            batch_size=self.batch_size or spec.batch_size,
            learning_rate=self.learning_rate or spec.learning_rate,
            **_resolved_data(self, spec),
            jit_compile=str(self.jit_compile).lower(),  # the API may pass True / False
        )
        if config.max_examples and config.batch_size > config.max_examples:
            raise ValueError(f"--batch_size ({config.batch_size}) must not exceed "
                             f"--max_examples ({config.max_examples}): no full batch to train on")
        return config

    def encoder_overrides(self):
        overrides = {}
        spec = registry.get(self.model)
        if spec.modality.name == "image":
            overrides.update(spec.input_overrides(self.image_size, self.channels))
        if self.stem_width:
            overrides["stem_width"] = self.stem_width
        for key in ("widths", "blocks"):
            value = getattr(self, key)
            if value:
                try:
                    overrides[key] = tuple(int(v) for v in value.split(","))
                except ValueError:
                    raise ValueError(f"--{key} must be comma-separated integers like 64,128,"
                                     f"256, got {value!r}") from None
                if min(overrides[key]) < 1:
                    raise ValueError(f"--{key} must be positive integers, got {value!r}")
        return overrides


def _resolved_data(config, spec):
    """The data settings as used: the source's name, the model's input, and (folders that
    hold out their test split) the fraction held out."""
    image = spec.modality.name == "image"
    if not image and (config.image_size or config.channels):
        raise ValueError(f"--image_size and --channels apply to image models; {spec.name} "
                         "takes 16 kHz waveforms")
    if config.image_size < 0 or config.channels not in (0, 1, 3):
        raise ValueError(f"--image_size must be >= 0 and --channels 0, 1 (grayscale) or 3 "
                         f"(RGB); got {config.image_size} and {config.channels}")
    source = config.source()  # a malformed --dataset fails here, naming the flag
    if source.modality is not spec.modality:
        raise ValueError(f"--dataset={source.name} holds {source.modality.inputs}; "
                         f"{spec.name} takes {spec.modality.inputs}")
    if not image:
        return {"dataset": source.name}
    holds_out = isinstance(source, FolderSource) and source.holds_out()
    return {"dataset": source.name, "image_size": source.crop, "channels": source.channels,
            "test_fraction": source.test_fraction if holds_out else config.test_fraction}


def check_data(config, spec):
    """Open the splits the run reads (list a folder's files and check their headers, open
    a tfds builder) before anything is written: a bad source leaves no run directory."""
    source = config.source()
    if spec.modality.name != "image" or source.in_memory:
        return  # the speech corpora and in-memory built-ins are checked as they load
    supervised = spec.objective == "supervised"
    role = "train" if supervised else "pretrain"
    splits = source.check(
        (role, "test"), config.data_dir, labels=("train",) if supervised else (),
        max_examples=0 if supervised and config.labels_per_class else config.max_examples)
    if splits[role].count < config.batch_size:
        raise ValueError(f"--dataset={config.dataset}: its {role} split has "
                         f"{splits[role].count} images, fewer than --batch_size "
                         f"({config.batch_size}): no full batch to train on")


JIT_COMPILE = {"auto": "auto", "true": True, "false": False}


def xla_setting(config):
    """TrainConfig.jit_compile as compile() takes it: "auto", True or False."""
    value = str(config.jit_compile).lower()
    if value not in JIT_COMPILE:
        raise ValueError(f"--jit_compile must be one of {tuple(JIT_COMPILE)}, got "
                         f"{config.jit_compile!r}")
    return JIT_COMPILE[value]


def steps_per_execution(config, steps_per_epoch):
    """--steps_per_execution, or the largest divisor of an epoch's steps below it.

    Keras runs whole executions: with 8 steps per epoch and 3 per execution it trains 9
    and takes the 9th batch from the next epoch's, so every later epoch is shifted and a
    resumed run (which starts at its epoch's first batch) no longer repeats an
    uninterrupted one. The same divisor on every (re)start keeps resumes exact."""
    wanted = config.steps_per_execution
    if not steps_per_epoch or steps_per_epoch % wanted == 0:
        return wanted
    used = max(d for d in range(1, wanted + 1) if steps_per_epoch % d == 0)
    print(f"--steps_per_execution={wanted} does not divide the {steps_per_epoch} steps of "
          f"an epoch (Keras would take the next epoch's batches): running {used} steps "
          "per execution", file=sys.stderr, flush=True)
    return used


def _history_seconds(history_csv):
    from .plots import read_history

    if not os.path.exists(history_csv):
        return 0.0
    return float(sum(read_history(history_csv).get("epoch_seconds", [])))


def train(config):
    """Fit the configured model; returns metrics.json's contents. Resumes a killed run."""
    config = config.resolved()
    spec = registry.get(config.model)
    check_data(config, spec)
    warn_about_random_modules(config)
    strategy = make_strategy(config.strategy, config.cpu_devices)
    run = RunDirectory(config.out_dir)
    chief = is_chief(strategy)
    # The chief holds the run directory for the whole run: a second train.py on the same
    # --out_dir is refused (the other workers of its own cluster only read it).
    with run.lock() if chief else contextlib.nullcontext(), os_errors_naming(run.path):
        # Everything is checked before anything is written: the configuration against
        # config.json and the backup's record, then the backup itself.
        run.compare_config(dataclasses.asdict(config), defaults={
            **dataclasses.asdict(TrainConfig()), **config.data_defaults(spec)})
        if chief:  # a killed process's temporary files: this one holds the lock
            run.remove_temporaries()
        finished = _already_complete(run, config)
        if finished is not None:  # nothing to train or evaluate again (nor to resume: a
            return finished       # finished run needs no backup, e.g. one kept in git)
        run.check_backup()  # a damaged backup is refused, never resumed
        if chief:
            run.write_config(dataclasses.asdict(config))
            run.repair_history()  # a line cut short by a crash is dropped, then re-made
        keras.utils.set_random_seed(config.seed)
        # under the strategy and the run's dtype policy (put back afterwards: it is
        # process-wide): the model, its optimizer and metrics; an image file that
        # does not decode mid-epoch is reported by name
        with strategy.scope(), policy_scope(config.mixed_precision), \
                corrupt_images_named():
            return TRAIN_BY_MODALITY[spec.modality.name](config, spec, run)


@contextlib.contextmanager
def os_errors_naming(folder):
    """Errors of the file system while a run trains name a path: an OSError raised
    without one (a full disk under CSVLogger's write) gets the run directory, and
    TensorFlow's own file errors about it (TensorBoard's event writer) become one-line
    OSErrors instead of tracebacks."""
    import re

    import tensorflow as tf

    from gim_zoo.files import os_error_naming

    try:
        yield
    except OSError as e:
        raise os_error_naming(e, folder) from e
    except (tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
            tf.errors.FailedPreconditionError, tf.errors.ResourceExhaustedError,
            tf.errors.AlreadyExistsError) as e:
        message = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:.*", "", e.message or "").strip()
        if str(folder) not in message:
            raise
        raise OSError(message) from e


def warn_about_random_modules(config):
    """--train_module=k (k > 1) trains module k on top of frozen modules 1..k-1: without
    --init_from those keep their random initialisation, which is rarely what was meant."""
    k = config.train_module
    if k > 1 and not config.init_from:
        earlier = "module 1" if k == 2 else f"modules 1-{k - 1}"
        print(f"warning: --train_module={k} without --init_from: {earlier} stay frozen at "
              f"their random initialisation. To train module {k} on trained modules, pass "
              f"the module-{k - 1} run as --init_from=RUN_DIR", file=sys.stderr, flush=True)
        return True
    return False


def _already_complete(run, config):
    """metrics.json of a run that has trained all config.epochs epochs and written its
    final weights and evaluation (the same command re-run), else None."""
    metrics = run.read_metrics()
    epochs_done = metrics.get("epochs_completed", 0)
    if (metrics.get("status") != "complete" or epochs_done < config.epochs
            or not run.encoder_weights_path.exists()):
        return None
    print(f"{run.path} is already complete ({epochs_done} epochs trained and evaluated); its "
          f"metrics are in {run.metrics_path}. Nothing to do: raise --epochs to train "
          "further, or use another --out_dir.", file=sys.stderr, flush=True)
    return metrics


def make_strategy(name, cpu_devices=0):
    """The tf.distribute strategy for --strategy (the default one for "")."""
    import tensorflow as tf

    if cpu_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
        except RuntimeError as e:
            raise ValueError("--cpu_devices needs a process whose TensorFlow has not yet "
                             "initialised its devices (run training/train.py)") from e
    if not name:
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy(
            None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")])
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy=multi_worker needs TF_CONFIG (the cluster and this "
                             "process's task) in the environment")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"--strategy must be one of {STRATEGIES}, got {name!r}")


def is_chief(strategy=None):
    """Whether this process writes the run directory: always, except on the non-chief
    workers of a multi-worker cluster."""
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def _shard_by_data(ds):
    """Multi-worker: every worker reads the same in-memory pipeline and keeps its share
    of each global batch (the default AUTO policy would first look for files)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _one_element_logs(model):
    """Make train/test steps return (1,)-shaped logs instead of scalars.

    Keras 3's TF trainer reduces multi-worker step outputs with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars ("Invalid reduction
    dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388). With one
    element per replica the reduction is the mean over replicas of each replica's
    metric: the global mean, as the replicas hold equal shares of each batch."""
    from keras import ops

    def wrap(step):
        def one_element(data):
            return {k: ops.reshape(v, (1,)) for k, v in step(data).items()}

        return one_element

    model.train_step = wrap(model.train_step)
    model.test_step = wrap(model.test_step)


def _train_images(config, spec, run):
    supervised = spec.objective == "supervised"
    source = config.source()
    # Self-supervised runs read the source's pre-training split (STL-10: its 100k
    # unlabelled images, as the paper), supervised ones its labelled train split.
    subset = supervised and config.labels_per_class
    train = source.load("train" if supervised else "pretrain", config.data_dir,
                        0 if subset else config.max_examples)
    test = source.load("test", config.data_dir)
    if subset:
        train = train.subset(balanced_subset(train.labels, config.labels_per_class, config.seed))
        if config.max_examples:
            train = train.first(config.max_examples)
    # Each epoch's order and augmentation are a function of (seed, epoch) and the
    # pipeline starts at the epoch the backup resumes, so a resumed run sees the batches
    # an uninterrupted one would (in memory, or streamed from files).
    start = ResumableBackup.completed_epochs(run.backup_dir)
    train_ds = train_pipeline(train, source, batch_size=config.batch_size, seed=config.seed,
                              epochs=max(config.epochs, start + 1), start_epoch=start)
    steps_per_epoch = train.count // config.batch_size

    def first_test_images(n):  # None: all
        return eval_pipeline(test.first(n) if n else test, source, batch_size=256)

    test_ds = first_test_images(config.final_eval_examples or None)  # final evaluation
    val_ds = first_test_images(config.eval_examples or None)  # per-epoch validation loss
    if not supervised:
        train_ds, val_ds, test_ds = images_only(train_ds), images_only(val_ds), images_only(test_ds)
    train_ds, val_ds, test_ds = (_shard_by_data(d) for d in (train_ds, val_ds, test_ds))

    model = spec.build_model(config.encoder_overrides(), config.train_module or None,
                             seed=config.seed,
                             num_classes=source.num_classes or train.num_classes or None)
    return _fit(config, spec, run, model, train_ds, val_ds, test_ds, train.count,
                steps_per_epoch=steps_per_epoch)


def _train_audio(config, spec, run):
    """Training on the speech corpus's random 20,480-sample crops: self-supervised, or
    (supervised) per-frame phone classification."""
    from gim_zoo.data.speech_corpus import crops_dataset, phone_targets

    crop = spec.encoder["crop_samples"]
    source = config.source()
    audio, speakers, labels = load_speech(source, "train", config.data_dir,
                                          max_utterances=config.max_examples or None)
    test_audio, test_speakers, test_labels = load_speech(
        source, "test", config.data_dir,
        max_utterances=(config.max_examples or None) if source.test_from_train else None)
    if spec.objective == "supervised" and max(lab.max() for lab in labels) < 0:
        raise ValueError(f"{spec.name} needs phone labels and {source.name} has none here "
                         "(LibriSpeech: phone alignments are not supported for supervised "
                         "training yet)")

    def waves(ds):
        if spec.objective == "supervised":
            return ds.map(phone_targets)
        return ds.map(lambda wave, speaker, phones: wave)

    train_ds = waves(crops_dataset(audio, speakers, labels, crop, batch_size=config.batch_size,
                                   training=True, seed=config.seed))
    test_ds = waves(crops_dataset(test_audio, test_speakers, test_labels, crop,
                                  batch_size=config.batch_size, training=False))
    model = spec.build_model(config.encoder_overrides(), config.train_module or None,
                             seed=config.seed,
                             num_classes=1 + max(lab.max() for lab in labels + test_labels))
    final_ds = test_ds
    if config.final_eval_examples:  # the final evaluation on the first N utterances
        n = config.final_eval_examples
        final_ds = waves(crops_dataset(test_audio[:n], test_speakers[:n], test_labels[:n],
                                       crop, batch_size=config.batch_size, training=False))
    return _fit(config, spec, run, model, train_ds, test_ds, final_ds, len(audio))


TRAIN_BY_MODALITY = {"image": _train_images, "audio": _train_audio}


def _fit(config, spec, run, model, train_ds, val_ds, test_ds, train_examples,
         steps_per_epoch=None):
    """Compile, fit with resumable backups, write weights, metrics and the loss plot.

    Runs under the strategy's scope (train() enters it). Only the chief writes: the other
    workers of a multi-worker cluster restore from the chief's backup, take part in every
    step and in the final evaluation, and leave the run directory alone."""
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    chief = is_chief(strategy)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _one_element_logs(model)
    supervised = spec.objective == "supervised"
    optimizer = keras.optimizers.Adam(config.learning_rate)
    # mixed_float16: compile wraps the optimizer in a LossScaleOptimizer
    speed = dict(jit_compile=xla_setting(config),
                 steps_per_execution=steps_per_execution(config, steps_per_epoch))
    if supervised:
        # weighted: audio crops weight padded frames 0 (images carry no weights)
        model.compile(optimizer, "sparse_categorical_crossentropy",
                      weighted_metrics=["accuracy"], **speed)
    else:
        model.compile(optimizer, **speed)
    if speed["jit_compile"] is True and model.jit_compile is not True:
        # Keras falls back to no XLA with a warning (a layer without XLA support, or
        # TensorFlow's op determinism); asked for explicitly, that is an error
        raise ValueError("--jit_compile=true: Keras cannot XLA-compile this model here "
                         "(see its warning above); use --jit_compile=auto or false")
    if config.init_from:  # also on resume: a module-at-a-time backup holds module k only
        load_weights_checked(model.encoder, RunDirectory(config.init_from).encoder_weights_path)

    # Order matters: the history row is written before the backup, so a kill between the
    # two repeats an epoch (read_history keeps its last row) rather than losing a row.
    callbacks = [EpochTimer(), keras.callbacks.TerminateOnNaN()]
    if chief:
        callbacks += [keras.callbacks.CSVLogger(str(run.history_path), append=True),
                      keras.callbacks.TensorBoard(str(run.logs_dir), write_graph=False)]
    # Module at a time: back up module k's variables and moments only.
    backup = ResumableBackup(run.backup_dir, write=chief, recovery=run.recovery,
                             variables=model.trained_variables if config.train_module else None,
                             settings=dataclasses.asdict(config))
    callbacks.append(backup)
    if SelfKill.from_env():  # fault-injection tests only
        callbacks.append(SelfKill.from_env())
    history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                        initial_epoch=backup.initial_epoch,
                        steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                        verbose=config.verbose, shuffle=False)
    last = {k: float(v[-1]) for k, v in history.history.items()}

    if not all(math.isfinite(v) for v in last.values()):
        # The backup holds the last finite epoch; keep it and the final weights untouched.
        if chief:
            run.update_metrics(status="stopped: non-finite loss", last_logs=last)
        raise FloatingPointError(
            f"training produced a non-finite loss ({last}); the last good checkpoint in "
            f"{run.backup_dir} was kept, final weights were not written"
        )

    encoder = model.encoder
    save_weights_as_worker(model, run.weights_path, chief)  # every worker saves, the
    save_weights_as_worker(encoder, run.encoder_weights_path, chief)  # chief's is kept
    if config.verbose:
        share = (f"the first {config.final_eval_examples:,} examples of "
                 if config.final_eval_examples else "all of ")
        print(f"final evaluation on {share}the test split (--final_eval_examples) ...",
              flush=True)
    final = {f"test_{k}": float(v) for k, v in
             model.evaluate(test_ds, verbose=config.verbose, return_dict=True).items()}
    if not chief:  # every worker evaluates (a collective); only the chief records
        return {"status": "worker (the chief wrote the run directory)", **final}
    epochs_done = _epochs_in_history(run)
    metrics = run.update_metrics(
        status="complete" if epochs_done >= config.epochs else "incomplete",
        model=config.model,
        objective=spec.objective,
        dataset=config.dataset,
        seed=config.seed,
        epochs_completed=epochs_done,
        train_examples=train_examples,
        train_seconds=round(_history_seconds(run.history_path), 1),
        encoder_parameters=int(encoder.count_params()),
        strategy=config.strategy or "one device",
        replicas=int(strategy.num_replicas_in_sync),
        final_train_logs=last or run.read_metrics().get("final_train_logs", {}),
        **final,
    )
    if os.path.exists(run.history_path):
        plot_loss_curves(run.history_path, run.loss_plot_path, title=config.model)
    return metrics


def _epochs_in_history(run):
    from .plots import read_history

    if not os.path.exists(run.history_path):
        return 0
    return len(read_history(run.history_path).get("epoch", []))

