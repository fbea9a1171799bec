"""The user-facing zoo: load(), info().

    encoder = gim_zoo.load("gim-fmnist-resnet")        # pretrained, verified, offline-capable
    features = encoder.feature_model(module=2, pool_to=3)(images)   # any module, 3x3-pooled

    encoder = gim_zoo.load("gim-espeak-audio")         # 16 kHz waveforms -> 10 ms frames
"""

import json
from pathlib import Path

from gim_zoo import hub, registry
from gim_zoo.model_folder import load_weights_checked, read_encoder


def load(name, weights="pretrained", revision=None, hub_repo=None, local_dir=None,
         cache_dir=None, endpoint=None):
    """A Keras encoder: image models take raw 0..255 images and give a (B, 7, 7, C) patch
    grid; audio models take (B, samples) 16 kHz waveforms and give (B, samples // 160, C).

    weights: "pretrained" (local folder -> Hub -> bundled copy, sha256-verified), None
      (random init), or a path: a model folder or a `.weights.h5` file (e.g. a run's
      encoder.weights.h5).
    revision, hub_repo, cache_dir, endpoint: Hub options (a branch, tag or commit sha).
    local_dir: a folder holding this model's files (or one sub-folder per model).
    """
    spec = registry.get(name)
    if weights is None:
        return spec.build_encoder()
    if weights == "pretrained":
        folder = hub.resolve(name, hub_repo or spec.hub_repo, revision, local_dir, cache_dir,
                             endpoint)
        return read_encoder(folder)
    path = Path(weights)
    if path.is_dir():
        metadata = path / "metadata.json"
        if metadata.exists():
            files = json.loads(metadata.read_text()).get("files", {})
            hub.verify_folder(path, files)
        return read_encoder(path)
    if path.is_file():
        encoder = spec.build_encoder()
        load_weights_checked(encoder, path)
        return encoder
    raise FileNotFoundError(
        f"weights={weights!r} is neither 'pretrained', None, a model folder nor a weights file")


def info(name):
    """What the zoo knows about `name`: spec, pinned files, and measured metrics if bundled."""
    spec = registry.get(name)
    details = {
        "name": spec.name,
        "objective": spec.objective,
        "dataset": spec.dataset,
        "summary": spec.summary,
        "paper": spec.paper,
        "license": spec.license,
        "encoder": dict(spec.encoder),
        "training": {"epochs": spec.epochs, "batch_size": spec.batch_size,
                     "learning_rate": spec.learning_rate,
                     "command": spec.training_command()},
        "hub_repo": spec.hub_repo,
        "pretrained_files": hub.pinned_files(name),
    }
    metrics = hub.BUNDLED_DIR / name / "metrics.json"
    if metrics.exists():
        details["metrics"] = json.loads(metrics.read_text())
    return details
