"""The on-disk layout of one zoo model, as Keras' `hf://` / KerasHub presets use it.

    config.json        the encoder, serialised by Keras (registered gim_zoo classes only)
    metadata.json      versions, parameter count, date, sha256 of every other file
    model.weights.h5   the encoder's weights
    README.md          model card (Hugging Face front matter)
    metrics.json       training command, seed, wall time, measured metrics
    *.tflite           exported encoders

Reading deserialises with Keras safe mode and accepts only the encoder classes, so a
downloaded config cannot run arbitrary code.
"""

import datetime
import json
import shutil
import tempfile
from pathlib import Path

import keras

from gim_zoo.models import audio, resnet  # noqa: F401  registers the encoder classes
from gim_zoo.runs import atomic_write_json

ENCODER_CLASSES = ("gim_zoo>PatchResNetEncoder", "gim_zoo>AudioEncoder")


def write_model_folder(encoder, folder, name, extra_files=None):
    """Write config/weights/metadata (+ extra {filename: source path or text}) atomically.

    The folder is built in a temporary sibling and renamed into place, so a reader never
    sees half a model.
    """
    from gim_zoo import __version__
    from gim_zoo.hub import sha256_of

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    staging.chmod(0o755)  # mkdtemp makes it private
    try:
        (staging / "config.json").write_text(
            json.dumps(keras.saving.serialize_keras_object(encoder), indent=2) + "\n")
        encoder.save_weights(staging / "model.weights.h5")
        for filename, source in (extra_files or {}).items():
            if isinstance(source, Path):
                shutil.copyfile(source, staging / filename)
            else:
                (staging / filename).write_text(source)
        files = {p.name: sha256_of(p) for p in sorted(staging.iterdir()) if p.is_file()}
        atomic_write_json(staging / "metadata.json", {
            "name": name,
            "keras_version": keras.__version__,
            "gim_zoo_version": __version__,
            "backend": keras.backend.backend(),
            "parameter_count": int(encoder.count_params()),
            "date_saved": datetime.date.today().isoformat(),
            "files": files,
        })
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            staging.rename(folder)
            shutil.rmtree(old)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_encoder(folder):
    """Build the encoder from config.json (safe mode) and load model.weights.h5."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    if config.get("registered_name") not in ENCODER_CLASSES:
        raise ValueError(
            f"{folder / 'config.json'} describes {config.get('registered_name')!r}, not a "
            f"gim_zoo encoder ({', '.join(ENCODER_CLASSES)}); refusing to deserialise it")
    encoder = keras.saving.deserialize_keras_object(config, safe_mode=True)
    load_weights_checked(encoder, folder / "model.weights.h5")
    return encoder


def load_weights_checked(model, path):
    """model.load_weights with errors that name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(
            f"cannot load {path} into {model.name}: {str(e).splitlines()[0]} (a truncated or "
            "corrupted file, or weights of a different architecture)") from e
