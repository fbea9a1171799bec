"""Turn a finished training run into a zoo model folder (what training/package.py runs).

Collects the run's encoder, its metrics.json and its probe results, exports TFLite (fp32
and int8), renders the model card, writes the folder atomically and pins every file's
sha256 in the package manifest. Metrics are copied from the run's own JSON files.
"""

import dataclasses
import datetime
import json
import tempfile
from pathlib import Path

from gim_zoo import presets, registry
from gim_zoo.exporting import export_tflite
from gim_zoo.files import OutputExistsError, atomic_write_text, read_json_object, sha256_of
from gim_zoo.presets import check_model_folder_target, load_weights_checked, write_model_folder
from gim_zoo.run_layout import RunLayout
from .run_directory import RunDirectory
from . import model_cards
from .pretraining import TrainConfig


def non_default_flags(config):
    """{flag: value} of a run's train.py settings that differ from the defaults (besides
    model, seed, out_dir and verbose), for the spec's training_command."""
    defaults = {**dataclasses.asdict(TrainConfig()),
                **config.data_defaults(registry.get(config.model))}  # its own data: no flag
    given = ("model", "seed", "out_dir", "verbose")
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)
            if f.name not in given and getattr(config, f.name) != defaults[f.name]}


def probe_datasets(probes_dir):
    """The data sources probe.py results in `probes_dir` were scored on (None: the
    model's registered source, which older results do not name)."""
    found = set()
    for path in Path(probes_dir).glob("*-seed*.json"):
        probe = json.loads(path.read_text())
        if "labels_per_class" in probe:
            found.add(probe.get("dataset"))
    return found


def read_probes(probes_dir, module=3, pool_to=1, weights=None, dataset=None):
    """{budget: probe result} of the probe JSON files probe.py wrote in `probes_dir`, over
    every probe seed there: the mean accuracy and, with several seeds, each seed's and the
    standard deviation (as report.py --deep prints them). weights: the encoder weights
    file; a probe that recorded other weights (e.g. before the run trained further) is
    left out. dataset: only probes on this source (None: the model's registered one)."""
    import numpy as np

    encoder = f"sha256:{sha256_of(weights)}" if weights else None
    by_budget = {}
    for path in sorted(Path(probes_dir).glob("*-seed*.json")):
        probe = read_json_object(path)
        if "labels_per_class" not in probe:  # an audio probe (probe_audio.py)
            continue
        if encoder and probe.get("encoder", encoder) != encoder:
            continue
        if probe.get("dataset") != dataset:
            continue
        if probe["module"] == module and probe.get("pool_to", 1) == pool_to:
            by_budget.setdefault(str(probe["labels_per_class"]), []).append(probe)
    probes = {}
    for budget, seeds in by_budget.items():
        seeds.sort(key=lambda p: p.get("seed", 0))
        accuracies = [p["test_accuracy"] for p in seeds]
        probes[budget] = {k: seeds[0][k] for k in ("train_examples", "test_examples",
                                                   "module", "pool_to", "steps")}
        probes[budget]["test_accuracy"] = float(np.mean(accuracies))
        if len(seeds) > 1:
            probes[budget].update(
                probe_seeds=[p.get("seed", 0) for p in seeds],
                test_accuracies=accuracies,
                test_accuracy_std=float(np.std(accuracies)))
    return probes


def check_trained(run_dir, trained):
    """Refuse a run that is not complete or trained no epoch (nothing worth packaging)."""
    if trained.get("status") != "complete":
        raise ValueError(f"{run_dir} is not a complete run (status {trained.get('status')!r})")
    epochs = trained.get("epochs_completed") or 0
    if epochs < 1:
        raise ValueError(f"{run_dir} trained {epochs} epochs: its weights are the random "
                         "initialisation; train it (train.py --epochs=N, N >= 1) first")


def training_jobs(run_dir):
    """[(run_dir, TrainConfig, metrics)] of every job behind `run_dir`'s weights, first job
    first: the run itself and, through each --init_from, the runs it started from (module
    k of a module-at-a-time encoder starts from module k-1's run). Each must be complete."""
    jobs, seen = [], set()
    while run_dir:
        key = Path(run_dir).resolve()
        if key in seen:
            raise ValueError(f"{run_dir}: the --init_from chain of runs loops")
        seen.add(key)
        run = RunDirectory(run_dir)
        if not run.config_path.exists():
            raise FileNotFoundError(
                f"{run_dir} (a run the packaged weights started from) is missing: its "
                "command and training time cannot be recorded")
        config = run.read_config(TrainConfig)
        trained = run.read_metrics()
        check_trained(run_dir, trained)
        jobs.append((str(run_dir), config, trained))
        run_dir = config.init_from
    return jobs[::-1]


def job_record(config, trained):
    """One training job as metrics.json records it."""
    return {
        "command": registry.get(config.model).training_command(
            config.seed, config.out_dir, **non_default_flags(config)),
        "epochs": trained["epochs_completed"],
        "train_seconds": trained["train_seconds"],
        "test_loss": trained.get("test_loss"),
        "test_module_losses": {k: v for k, v in trained.items()
                               if k.startswith("test_module")},
    }


def run_metrics(run_dir, module=None, pool_to=1, note="", random_init_probes=None):
    """metrics.json for a zoo folder, assembled from the run's own files (and those of the
    runs it started from: a module-at-a-time encoder is one job per module).

    random_init_probes: the probes folder of the random-init baseline (probe.py
    --random_init), whose scores with the same probe are recorded next to the model's:
    a probe on a 3x3 grid is strong even on random features, so the gap is what counts."""
    jobs = training_jobs(run_dir)
    _, config, trained = jobs[-1]
    records = [job_record(c, t) for _, c, t in jobs]
    weights = RunDirectory(run_dir).encoder_weights_path
    spec = registry.get(config.model)
    probed = _probed_dataset(RunLayout(run_dir).probes_dir, config, spec)
    probes = read_probes(RunLayout(run_dir).probes_dir, module or 3, pool_to, weights, probed)
    baseline = (read_probes(random_init_probes, module or 3, pool_to, dataset=probed)
                if random_init_probes else {})
    training = {
        **records[-1],
        "dataset": config.dataset or registry.get(config.model).dataset.name,
        "seed": config.seed,
        "train_examples": trained["train_examples"],
        "test_accuracy": trained.get("test_accuracy"),
        "hardware": "2 CPU cores, no GPU",
        "note": note,
    }
    if len(records) > 1:  # the whole recipe, and its total time
        training.update(command=" && ".join(r["command"] for r in records),
                        train_seconds=round(sum(r["train_seconds"] for r in records), 1),
                        jobs=records)
    # the paper's global pooling too, where the run was probed that way
    global_pool = (read_probes(RunLayout(run_dir).probes_dir, module or 3, 1, weights, probed)
                   if pool_to != 1 else {})
    global_baseline = (read_probes(random_init_probes, module or 3, 1, dataset=probed)
                       if global_pool and random_init_probes else {})
    return {
        "model": config.model,
        "training": training,
        "linear_probe": probes,
        **({"linear_probe_dataset": probed} if probed else {}),
        **({"random_init_linear_probe": baseline} if baseline else {}),
        **({"global_pool_linear_probe": global_pool} if global_pool else {}),
        **({"random_init_global_pool_linear_probe": global_baseline}
           if global_baseline else {}),
        "probe_command": "python training/probe.py --run_dir=RUN --labels_per_class=60,600,0 "
                         f"--pool_to={pool_to} (0 = all labels)",
        "packaged": datetime.date.today().isoformat(),
    }


def _probed_dataset(probes_dir, config, spec):
    """Which source's probes a card reports (None: the registered source's): the run's
    training source if it was probed, else the one other source probed (a run trained on
    an unlabelled folder is probed on a labelled one)."""
    found = probe_datasets(probes_dir) if Path(probes_dir).is_dir() else set()
    own = None if config.dataset in ("", spec.dataset.name) else config.dataset
    if own in found or not found:
        return own
    if len(found) > 1:
        raise ValueError(f"{probes_dir} holds probes on several sources "
                         f"({', '.join(sorted(d or spec.dataset.name for d in found))}) and "
                         "none on the run's own: keep the one the card should report")
    return next(iter(found))


def read_audio_probes(probes_dir, seed=0):
    """{"moduleN": phone / speaker probe result} of the JSONs probe_audio.py wrote."""
    probes = {}
    for path in sorted(Path(probes_dir).glob(f"audio-*-module*-seed{seed}.json")):
        probe = read_json_object(path)
        probes[f"module{probe['module']}"] = {
            k: probe[k] for k in ("phone_accuracy", "speaker_accuracy", "phone_frames_test",
                                  "utterances_test", "module", "feature_dim", "steps")}
    return probes


def audio_run_metrics(run_dir, seed=0, spec=None, note="", random_init_probes=None):
    """metrics.json of an audio model: training record plus phone / speaker probes (the
    run's probes/ folder, and the random-init encoder's for comparison)."""
    metrics = run_metrics(run_dir, note=note)
    metrics["training"]["dataset_note"] = (
        "synthetic speech: the espeak-ng corpus of training/make_speech_corpus.py")
    metrics["linear_probe"] = read_audio_probes(RunLayout(run_dir).probes_dir, seed)
    if random_init_probes:
        metrics["random_init_linear_probe"] = read_audio_probes(random_init_probes, seed)
    else:
        metrics.pop("random_init_linear_probe", None)
    metrics["probe_command"] = "python training/probe_audio.py --run_dir=RUN --module=N"
    return metrics


def image_run_metrics(run_dir, seed, spec, note="", random_init_probes=None):
    """metrics.json of an image model: training record (with the encoder's input shape)
    plus probes at its probe pooling."""
    metrics = run_metrics(run_dir, pool_to=spec.probe_pool_to, note=note,
                          random_init_probes=random_init_probes)
    config = TrainConfig(**RunDirectory(run_dir).read_config())
    encoder = {**spec.encoder, **config.encoder_overrides()}
    metrics["training"]["input_shape"] = [encoder["image_size"], encoder["image_size"],
                                          encoder["channels"]]
    return metrics


METRICS_BY_MODALITY = {"image": image_run_metrics, "audio": audio_run_metrics}


def check_out_dir(folder, source_dir, overwrite=False):
    """Refuse, before any work, an output folder that would replace the run being packaged
    (the run directory itself, a folder inside it or one holding it: `runs`, `.`) or
    anything else that is not a model folder package.py wrote (see
    check_model_folder_target). folder=None (the package's bundled copy) is always ours.

    Raises:
        OutputExistsError: the message names both folders.
    """
    if folder is None:
        return
    out, source = Path(folder).resolve(), Path(source_dir).resolve()
    if out == source or source in out.parents or out in source.parents:
        relation = ("is" if out == source else "is inside" if source in out.parents
                    else "holds")
        raise OutputExistsError(
            f"--out_dir {folder} {relation} the run directory {source_dir} being packaged; "
            "writing there would replace the run (its backup, history, metrics). Choose a "
            "folder outside it, e.g. models/NAME")
    check_model_folder_target(folder, overwrite)


def package_run(name, run_dir, folder=None, cards_dir=None, data_dir=None, note="",
                random_init_probes=None, overwrite=False):
    """Write the zoo folder for `name` from `run_dir`; returns the folder path.

    folder: where (None: the package's bundled copy, which it replaces); an existing
      folder is replaced only if it is a model folder written before and `overwrite`."""
    spec = registry.get(name)
    check_out_dir(folder, run_dir, overwrite)
    run = RunDirectory(run_dir)
    config = run.read_config(TrainConfig)
    if config.model != name:
        raise ValueError(f"{run_dir} trained {config.model!r}, not {name!r}")
    check_trained(run_dir, run.read_metrics())  # before any work
    encoder = spec.build_encoder(**config.encoder_overrides())
    load_weights_checked(encoder, run.encoder_weights_path)
    metrics = METRICS_BY_MODALITY[spec.modality.name](
        run_dir, config.seed, spec, note, random_init_probes)
    return _write_zoo_folder(spec, encoder, metrics, folder, cards_dir, data_dir,
                             source=config.source(), overwrite=overwrite)


def ticket_command(spec, ticket_dir, seed, round_index=None):
    """The commands that made and packaged this ticket run: lth_results.sh's experiment
    when the run directory has its name (runs/lth/EXPERIMENT-ticket-seedN), else the
    registry's recipe for the model."""
    import re

    match = re.fullmatch(r"(.+)-ticket-seed(\d+)", Path(ticket_dir).name)
    if not match:
        return spec.training_command(seed)
    chosen = "" if round_index is None else f" --round={round_index}"
    return (f"SEED={match[2]} EXPERIMENTS={match[1]} bash training/lth_results.sh && "
            f"python training/package.py --model={spec.name} --ticket_dir={ticket_dir}{chosen}")


def package_ticket(name, ticket_dir, round_index=None, folder=None, cards_dir=None,
                   data_dir=None, note="", overwrite=False):
    """Write the zoo folder of a lottery ticket from an IMP run (training/lottery.py):
    the encoder as trained in the chosen round, pruned weights exactly zero. folder and
    overwrite as package_run's."""
    from gim_zoo.lottery import load_ticket
    from gim_zoo.lottery.tickets import read_round_metrics
    from .lottery_rounds import LotteryConfig, choose_round, pruning_rule, rewinding_rule

    spec = registry.get(name)
    check_out_dir(folder, ticket_dir, overwrite)
    if not spec.ticket_of:
        raise ValueError(f"{name} is not a lottery-ticket model; package it with --run_dir")
    config = RunDirectory(ticket_dir).read_config(LotteryConfig)
    if config.network != spec.ticket_of or config.control:
        raise ValueError(f"{ticket_dir} pruned {config.network!r}"
                         f"{' as a control' if config.control else ''}; {name} is a ticket "
                         f"of {spec.ticket_of!r}")
    rounds = read_round_metrics(ticket_dir)
    if len(rounds) < 2:
        raise ValueError(f"{ticket_dir} has no pruned round yet")
    r = choose_round(rounds) if round_index is None else round_index
    model, masks = load_ticket(ticket_dir, r)
    scored = rounds[r]
    score = {"test_accuracy": scored["test_accuracy"],
             "test_examples": config.eval_examples or 10000}
    if spec.objective == "supervised":
        probes, own = {}, scored["test_accuracy"]
    else:
        probes = {str(config.probe_labels_per_class): {
            **score, "train_examples": scored.get("probe_train_examples"),
            "module": model.encoder.num_modules,
            "pool_to": spec.probe_pool_to, "steps": config.probe_steps}}
        own = None
    metrics = {
        "model": name,
        "training": {
            "command": ticket_command(spec, ticket_dir, config.seed, round_index),
            "seed": config.seed,
            "epochs": config.epochs,
            "train_seconds": scored.get("seconds"),
            "train_examples": config.max_examples or 60000,
            "test_accuracy": own,
            "hardware": "2 CPU cores, no GPU",
            "note": note,
        },
        "ticket": {
            "ticket_of": spec.ticket_of,
            "round": r,
            "pruning": pruning_rule(config, masks.kinds()),
            "rewinding": rewinding_rule(config),
            "weights_remaining": masks.remaining(),
            "epochs_per_round": config.epochs,
            "train_examples": config.max_examples or 60000,
            "dense_test_accuracy": rounds[0]["test_accuracy"],
            "ticket_test_accuracy": scored["test_accuracy"],
            "rounds": rounds,
        },
        "linear_probe": probes,
        "packaged": datetime.date.today().isoformat(),
    }
    return _write_zoo_folder(spec, model.encoder, metrics, folder, cards_dir, data_dir,
                             sparse=True, overwrite=overwrite)


def _write_zoo_folder(spec, encoder, metrics, folder, cards_dir, data_dir, sparse=False,
                      source=None, overwrite=False):
    """folder=None: the bundled copy, pinned in the package manifest (replaced: it is the
    package's own). Any other folder is all that is written (besides cards_dir when
    given): the manifest pins only the bundled copies, which gim_zoo.load checks. source:
    the data the run trained on (its training images calibrate int8; default the model's
    registered source)."""
    card = model_cards.render(spec, metrics)
    bundled = folder is None
    # images: the probe's pooled grid; audio: per-frame features, GRU unrolled for TFLite
    features = spec.modality.export_model(encoder, spec)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_tflite(features, Path(tmp) / presets.TFLITE_FILE, sparse=sparse)
        calibration = spec.modality.calibration_inputs(spec, data_dir, source=source,
                                                       encoder=encoder)
        int8 = export_tflite(features, Path(tmp) / presets.TFLITE_INT8_FILE, quantize="int8",
                             representative_images=calibration)
        folder = write_model_folder(
            encoder, folder or presets.BUNDLED_DIR / spec.name, spec.name, overwrite=(
                overwrite or bundled), extra_files={
                presets.CARD_FILE: card,
                presets.METRICS_FILE: json.dumps(metrics, indent=2, sort_keys=True) + "\n",
                presets.TFLITE_FILE: fp32,
                presets.TFLITE_INT8_FILE: int8,
            })
    if bundled:
        presets.pin(spec.name, folder)
    if cards_dir:
        atomic_write_text(Path(cards_dir) / f"{spec.name}.md", card)
    return folder
