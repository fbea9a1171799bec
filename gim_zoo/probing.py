"""Linear-probe evaluation of a trained (or randomly initialised) encoder.

What training/probe.py runs: load the encoder of a run directory, freeze it, fit a softmax
layer on a class-balanced label budget of the training split, report test top-1.
"""

import dataclasses
from pathlib import Path

import keras

from gim_zoo import registry
from gim_zoo.data import image_pipeline
from gim_zoo.models.probe import balanced_subset, fit_linear_probe
from gim_zoo.runs import RunDirectory, atomic_write_json
from gim_zoo.training import TrainConfig, load_split


@dataclasses.dataclass
class ProbeConfig:
    run_dir: str = ""
    model: str = ""
    random_init: bool = False
    labels_per_class: int = 0
    module: int = 0
    steps: int = 3000
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    data_dir: str = ""
    out_dir: str = ""

    HELP = {
        "run_dir": "run directory written by training/train.py (its encoder is probed)",
        "model": "registry model to build untrained, with --random_init",
        "random_init": "probe a randomly initialised encoder (baseline); needs --model",
        "labels_per_class": "labelled training examples per class; 0 uses every label",
        "module": "which module's output to probe (1-based); 0 is the last",
        "steps": "Adam steps (batches) of the softmax layer, whatever the label budget",
        "out_dir": "where the result JSON goes (default: RUN_DIR/probes)",
    }


def load_encoder(config):
    """(encoder, spec, where results go) for a run directory or a random-init baseline."""
    if config.random_init:
        if not config.model:
            raise ValueError("--random_init needs --model (which encoder to build)")
        spec = registry.get(config.model)
        keras.utils.set_random_seed(config.seed)
        encoder = spec.build_encoder()
        out_dir = Path(config.out_dir or f"runs/random-init-{spec.name}-seed{config.seed}")
        return encoder, spec, out_dir
    if not config.run_dir:
        raise ValueError("give --run_dir (a trained run) or --random_init --model=NAME")
    run = RunDirectory(config.run_dir)
    train_config = TrainConfig(**{k: v for k, v in run.read_config().items()
                                  if k in {f.name for f in dataclasses.fields(TrainConfig)}})
    spec = registry.get(train_config.model)
    if not run.encoder_weights_path.exists():
        raise FileNotFoundError(
            f"{run.encoder_weights_path} does not exist: the run has not finished an epoch "
            "and written its weights yet (re-run its train.py command to resume it)")
    encoder = spec.build_encoder(**train_config.encoder_overrides())
    encoder.load_weights(run.encoder_weights_path)
    return encoder, spec, Path(config.out_dir or run.path / "probes")


def probe(config):
    """Fit and evaluate the linear probe; writes and returns the result dict."""
    encoder, spec, out_dir = load_encoder(config)
    train_images, train_labels = load_split(spec.dataset, "train", config.data_dir)
    test_images, test_labels = load_split(spec.dataset, "test", config.data_dir)
    if train_labels is not None:
        keep = balanced_subset(train_labels, config.labels_per_class or None, config.seed)
        train_images, train_labels = train_images[keep], train_labels[keep]
    train_ds = image_pipeline(train_images, train_labels, spec.dataset, batch_size=256)
    test_ds = image_pipeline(test_images, test_labels, spec.dataset, batch_size=256)
    _, metrics = fit_linear_probe(
        encoder, train_ds, test_ds, module=config.module or None, num_classes=spec.num_classes,
        steps=config.steps, batch_size=config.batch_size,
        learning_rate=config.learning_rate, seed=config.seed,
    )
    budget = config.labels_per_class or "all"
    result = {
        "source": "random-init" if config.random_init else str(config.run_dir),
        "model": spec.name,
        "labels_per_class": budget,
        "seed": config.seed,
        **metrics,
    }
    name = f"labels{budget}-module{metrics['module']}-seed{config.seed}.json"
    atomic_write_json(out_dir / name, result)
    result["path"] = str(out_dir / name)
    return result
