"""Linear-probe evaluation of a trained (or randomly initialised) encoder.

What training/probe.py runs: load the encoder of a run directory, freeze it, fit a softmax
layer on class-balanced label budgets of the training split, report test top-1. Features
are computed once and shared by every budget.
"""

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np

from gim_zoo import registry
from gim_zoo.data.pipelines import corrupt_images_named, eval_pipeline
from gim_zoo.data.sources import image_source
from gim_zoo.models.probe import balanced_subset, encode, probe_from_features
from gim_zoo.files import atomic_write_json, sha256_of
from gim_zoo.presets import load_weights_checked
from gim_zoo.run_layout import RunLayout
from gim_zoo.validation import check_config, integer, number
from .run_directory import RunDirectory
from .pretraining import TrainConfig


@dataclasses.dataclass
class ProbeConfig:
    run_dir: str = ""
    model: str = ""
    random_init: bool = False
    ticket_dir: str = ""
    round: int = -1
    labels_per_class: str = "0"
    module: int = 0
    pool_to: int = 0
    steps: int = 10000
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    seeds: str = ""
    data_dir: str = ""
    out_dir: str = ""
    verbose: int = 1
    redo: bool = False
    dataset: str = ""
    test_fraction: float = 0.0

    LIMITS = {"module": integer(0, note="0: the last"),
              "pool_to": integer(0, note="0: the model's probe pooling"),
              "steps": integer(1), "batch_size": integer(1),
              "learning_rate": number(0, low_open=True), "seed": integer(0),
              "verbose": integer(0, 2)}

    HELP = {
        "dataset": "labelled data the probe fits (its train split) and scores (its test "
                   "split): '' the run's training source (for STL-10 its labelled "
                   "train/test splits), or any source as train.py --dataset takes it "
                   "(fashion_mnist, stl10, tfds/NAME[:CONFIG], folder/PATH with class "
                   "subfolders), resized and converted to the encoder's input",
        "test_fraction": "folder/PATH without PATH/test: the fraction of files held out "
                         "as the test split; 0: the run's (or 0.1)",
        "run_dir": "run directory written by training/train.py (its encoder is probed)",
        "model": "registry model to build untrained, with --random_init",
        "random_init": "probe a randomly initialised encoder (baseline); needs --model",
        "ticket_dir": "a lottery-ticket run of training/lottery.py (a GIM/CPC encoder): probe "
                      "its encoder as trained in --round (results in TICKET_DIR/probes/roundNN)",
        "round": "with --ticket_dir: which round (0: the dense encoder)",
        "labels_per_class": "labelled training examples per class, comma-separated for "
                            "several budgets (e.g. 60,600,0); 0 uses every label",
        "module": "which module's output to probe (1-based); 0 is the last",
        "pool_to": "average-pool the patch grid to k x k before the softmax (1: global, "
                   "the paper's); 0: the model's registered probe pooling",
        "steps": "Adam steps (batches) of the softmax layer, whatever the label budget",
        "seed": "probe seed: which labelled examples a budget draws, and the softmax's "
                "initialisation and batch order (and the encoder with --random_init)",
        "seeds": "several probe seeds, comma-separated (e.g. 0,1,2), sharing one encoding "
                 "pass; overrides --seed (with --random_init the encoder is --seed's)",
        "out_dir": "where the result JSON goes (default: RUN_DIR/probes)",
        "redo": "fit again even where a result of the same encoder weights and settings "
                "exists (by default those are reported, not recomputed)",
    }


def probe_source(config, spec, train_config, encoder):
    """The labelled source the probe reads, fitted to the encoder's input: --dataset, else
    the run's training source, else the model's."""
    own = (train_config.dataset if train_config else "") or spec.dataset.name
    name = config.dataset or own
    fraction = config.test_fraction or (
        train_config.test_fraction if train_config and name == own else 0.0)
    return image_source(name, fraction).fitted(encoder.image_size, encoder.channels,
                                               like=spec.dataset)


def load_encoder(config):
    """(encoder, spec, the run's TrainConfig or None, where results go, what identifies
    the encoder's weights) for a run directory or a random-init baseline."""
    if config.ticket_dir:
        return _ticket_encoder(config)
    if config.random_init:
        if not config.model:
            raise ValueError("--random_init needs --model (which encoder to build)")
        spec = registry.get(config.model)
        keras.utils.set_random_seed(config.seed)
        encoder = spec.build_encoder()
        out_dir = Path(config.out_dir or f"runs/random-init-{spec.name}-seed{config.seed}")
        return encoder, spec, None, out_dir, f"random-init {spec.name} seed {config.seed}"
    if not config.run_dir:
        raise ValueError("give --run_dir (a trained run) or --random_init --model=NAME")
    run = RunDirectory(config.run_dir)
    train_config = run.read_config(TrainConfig)  # types and ranges checked, file named
    spec = registry.get(train_config.model)
    if not run.encoder_weights_path.exists():
        raise FileNotFoundError(
            f"{run.encoder_weights_path} does not exist: the run has not finished an epoch "
            "and written its weights yet (re-run its train.py command to resume it)")
    encoder = spec.build_encoder(**train_config.encoder_overrides())
    load_weights_checked(encoder, run.encoder_weights_path)
    return (encoder, spec, train_config, Path(config.out_dir or run.probes_dir),
            f"sha256:{sha256_of(run.encoder_weights_path)}")


def _ticket_encoder(config):
    """The encoder of a lottery-ticket run as trained in round `config.round`."""
    from gim_zoo.lottery import completed_rounds, load_ticket, ticket_config
    from gim_zoo.lottery.tickets import trained_weights_path

    if config.run_dir or config.random_init:
        raise ValueError("give one of --ticket_dir, --run_dir and --random_init")
    network = ticket_config(config.ticket_dir)["network"]
    if network not in registry.list_models() or \
            registry.get(network).objective not in ("gim", "cpc"):
        raise ValueError(f"{config.ticket_dir} pruned {network!r}: --ticket_dir probes the "
                         "encoder of a GIM or CPC ticket run")
    done = completed_rounds(config.ticket_dir)
    if not 0 <= config.round < done:
        raise ValueError(f"--round must name a finished round of {config.ticket_dir} "
                         f"(0..{done - 1}), got {config.round}")
    model, _ = load_ticket(config.ticket_dir, config.round)
    weights = trained_weights_path(config.ticket_dir, config.round)
    out_dir = Path(config.out_dir or RunLayout(config.ticket_dir).probes_dir
                   / f"round{config.round:02d}")
    return (model.encoder, registry.get(network), None, out_dir,
            f"sha256:{sha256_of(weights)}")


def parse_budgets(text):
    """'60,600,0' -> [60, 600, 0]; refuses anything but non-negative integers."""
    try:
        budgets = [int(b) for b in str(text).split(",") if b.strip()]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) < 0:
        raise ValueError(f"--labels_per_class wants non-negative integers like 60,600,0; "
                         f"got {text!r}")
    return budgets


def parse_seeds(text):
    """'0,1,2' -> [0, 1, 2]; refuses anything but distinct non-negative integers."""
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds wants distinct non-negative integers like 0,1,2; got {text!r}")
    return seeds


def earlier_result(path, wanted):
    """The result JSON at `path` if it was computed with exactly the `wanted` encoder and
    settings (a deep encoder's encoding pass takes many minutes); else None."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if all(result.get(k) == v for k, v in wanted.items()) else None


def probe(config):
    """Fit and evaluate the linear probe for every budget and seed not already probed with
    the same encoder weights and settings; writes one JSON per budget and seed and returns
    the list of result dicts (earlier ones marked `reused`)."""
    check_config(config)  # before any work: --steps=0 would fit forever
    budgets = parse_budgets(config.labels_per_class)
    seeds = parse_seeds(config.seeds) if config.seeds else [config.seed]
    encoder, spec, train_config, out_dir, encoder_id = load_encoder(config)
    source = probe_source(config, spec, train_config, encoder)
    pool_to = config.pool_to or spec.probe_pool_to
    module = config.module or encoder.num_modules
    settings = {"encoder": encoder_id, "module": module, "pool_to": pool_to,
                "steps": config.steps, "probe_batch_size": config.batch_size,
                "learning_rate": config.learning_rate}
    # Probes of another source than the registered one say which, in their settings and
    # file names (probes of the registered source predate the key).
    prefix = ""
    if source.name != spec.dataset.name:
        settings["dataset"] = source.name
        prefix = source.slug + "-"

    def path_of(seed, budget):
        return out_dir / (f"{prefix}labels{budget or 'all'}-module{module}-pool{pool_to}"
                          f"-seed{seed}.json")

    results, todo = [], []
    for seed in seeds:
        for budget in budgets:
            earlier = None if config.redo else earlier_result(
                path_of(seed, budget),
                {**settings, "seed": seed, "labels_per_class": budget or "all"})
            if earlier:
                results.append({**earlier, "path": str(path_of(seed, budget)), "reused": True})
            else:
                todo.append((seed, budget))
    if not todo:
        return results
    # Before any encoding and any file: a source without labels is refused here.
    train_split, test_split = source.check(("train", "test"), config.data_dir,
                                           labels=("train", "test")).values()
    # Each budget's examples are drawn from the full training split (the same ones as a
    # single-budget run); only their union is encoded.
    subsets = {(s, b): balanced_subset(train_split.labels, b or None, s) for s, b in todo}
    union = np.unique(np.concatenate(list(subsets.values())))
    with corrupt_images_named():
        train = encode(encoder, module, eval_pipeline(train_split.subset(union), source, 256),
                       pool_to, config.verbose)
        test = encode(encoder, module, eval_pipeline(test_split, source, 256), pool_to,
                      config.verbose)
    num_classes = source.num_classes or train_split.num_classes
    for seed, budget in subsets:
        keep = np.searchsorted(union, subsets[seed, budget])
        _, metrics = probe_from_features(
            encoder, module, pool_to, (train[0][keep], train[1][keep]), test,
            num_classes=num_classes, steps=config.steps, batch_size=config.batch_size,
            learning_rate=config.learning_rate, seed=seed, verbose=config.verbose)
        result = {
            "source": "random-init" if config.random_init else
                      str(config.ticket_dir or config.run_dir),
            **({"round": config.round} if config.ticket_dir else {}),
            "model": spec.name,
            "labels_per_class": budget or "all",
            "seed": seed,
            **settings,
            **metrics,
        }
        atomic_write_json(path_of(seed, budget), result)
        results.append({**result, "path": str(path_of(seed, budget))})
    return results
