"""Turn a finished training run into a zoo model folder (what export/package.py runs).

Collects the run's encoder, its metrics.json and its probe results, exports TFLite (fp32
and int8), renders the model card, writes the folder atomically and pins every file's
sha256 in the package manifest. Metrics are copied from the run's own JSON files.
"""

import dataclasses
import datetime
import json
import tempfile
from pathlib import Path

from gim_zoo import hub, model_card, registry
from gim_zoo.exporting import export_tflite
from gim_zoo.model_folder import load_weights_checked, write_model_folder
from gim_zoo.runs import RunDirectory, atomic_write_json, atomic_write_text
from gim_zoo.training import TrainConfig, load_split


def training_command(config):
    """The train.py command line that reproduces a run (non-default flags only)."""
    defaults = TrainConfig()
    always = ("model", "seed", "out_dir")
    args = [f"--{name}={getattr(config, name)}" for name in always]
    args += [f"--{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(TrainConfig)
             if f.name not in always + ("verbose",)
             and getattr(config, f.name) != getattr(defaults, f.name)]
    return "python training/train.py " + " ".join(args)


def run_metrics(run_dir, seed=0, module=None, note=""):
    """metrics.json for a zoo folder, assembled from the run's own files."""
    run = RunDirectory(run_dir)
    config = TrainConfig(**run.read_config())
    trained = run.read_metrics()
    if trained.get("status") != "complete":
        raise ValueError(f"{run_dir} is not a complete run (status {trained.get('status')!r})")
    probes = {}
    for path in sorted(Path(run_dir).glob(f"probes/*-seed{seed}.json")):
        probe = json.loads(path.read_text())
        if probe["module"] == (module or 3):
            probes[str(probe["labels_per_class"])] = {
                k: probe[k] for k in ("test_accuracy", "train_examples", "test_examples",
                                      "module", "steps")}
    return {
        "model": config.model,
        "training": {
            "command": training_command(config),
            "seed": config.seed,
            "epochs": trained["epochs_completed"],
            "train_seconds": trained["train_seconds"],
            "train_examples": trained["train_examples"],
            "test_loss": trained.get("test_loss"),
            "test_accuracy": trained.get("test_accuracy"),
            "test_module_losses": {k: v for k, v in trained.items()
                                   if k.startswith("test_module")},
            "hardware": "2 CPU cores, no GPU",
            "note": note,
        },
        "linear_probe": probes,
        "probe_command": "python training/probe.py --run_dir=RUN --labels_per_class=N "
                         "(N = 60, 600, 0 for all)",
        "packaged": datetime.date.today().isoformat(),
    }


def package_run(name, run_dir, folder=None, cards_dir=None, data_dir=None, note=""):
    """Write the zoo folder for `name` from `run_dir`; returns the folder path."""
    spec = registry.get(name)
    run = RunDirectory(run_dir)
    config = TrainConfig(**run.read_config())
    if config.model != name:
        raise ValueError(f"{run_dir} trained {config.model!r}, not {name!r}")
    encoder = spec.build_encoder(**config.encoder_overrides())
    load_weights_checked(encoder, run.encoder_weights_path)
    metrics = run_metrics(run_dir, config.seed, note=note)
    card = model_card.render(spec, metrics)
    images, _ = load_split(spec.dataset, "train", data_dir)
    features = encoder.feature_model(pooled=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_tflite(features, Path(tmp) / "encoder.tflite")
        int8 = export_tflite(features, Path(tmp) / "encoder_int8.tflite", quantize="int8",
                             representative_images=images[:200])
        folder = write_model_folder(encoder, folder or hub.BUNDLED_DIR / name, name, {
            "README.md": card,
            "metrics.json": json.dumps(metrics, indent=2, sort_keys=True) + "\n",
            "encoder.tflite": fp32,
            "encoder_int8.tflite": int8,
        })
    pin(name, folder)
    if cards_dir:
        atomic_write_text(Path(cards_dir) / f"{name}.md", card)
    return folder


def pin(name, folder, revision=None):
    """Record every file's sha256 (metadata.json included) in the package manifest."""
    files = {p.name: hub.sha256_of(p) for p in sorted(Path(folder).iterdir()) if p.is_file()}
    manifest = hub.read_manifest()
    manifest[name] = {"files": files, "revision": revision}
    atomic_write_json(hub.MANIFEST_PATH, manifest)
