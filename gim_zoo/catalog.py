"""What the zoo knows about a model, from the registry and the package's JSON files only.

Kept free of TensorFlow / Keras imports, so `gim_zoo.info()` and `python -m gim_zoo list /
info` answer in well under a second (tests/test_cli.py checks that TensorFlow stays
unimported). `gim_zoo.zoo.info` is this function.
"""

from gim_zoo import presets, registry
from gim_zoo.files import read_json_object


def info(name: str) -> dict:
    """What the zoo knows about `name`: spec, pinned files, and measured metrics if bundled.

    Raises:
        UnknownModelError: `name` is not in the registry (the message lists close matches).
        InstallationError: the package manifest is missing or unreadable.
    """
    spec = registry.get(name)
    published = presets.manifest_entry(name) or {}
    details = {
        "name": spec.name,
        "objective": spec.objective,
        "dataset": spec.dataset.name,
        "summary": spec.summary,
        "paper": spec.paper,
        "license": spec.license,
        "encoder": dict(spec.encoder),
        "training": {"epochs": spec.epochs, "batch_size": spec.batch_size,
                     "learning_rate": spec.learning_rate,
                     "command": spec.training_command()},
        "hub_repo": published.get("hub_repo"),
        "pretrained_files": dict(published.get("files", {})),
    }
    metrics = presets.BUNDLED_DIR / name / presets.METRICS_FILE
    if metrics.exists():
        details["metrics"] = read_json_object(metrics, presets.RECOVER_BUNDLED)
    return details
