"""The on-disk layout of one zoo model, as Keras' `hf://` / KerasHub presets use it.

    config.json        the encoder, serialised by Keras (registered gim_zoo classes only)
    metadata.json      versions, parameter count, date, sha256 of every other file
    model.weights.h5   the encoder's weights
    README.md          model card (Hugging Face front matter)
    metrics.json       training command, seed, wall time, measured metrics
    *.tflite           exported encoders

Reading deserialises with Keras safe mode and accepts only the encoder classes, so a
downloaded config cannot run arbitrary code. Read as a registry model, a folder must hold
that model's encoder class (an audio folder is never an image model); a different
architecture (other widths, blocks, image size...) is refused unless the caller opts out
explicitly (`allow_other_architecture=True`: a user's own run of another size).

Keras is imported inside the functions (`gim_zoo.presets` imports this module, and
`gim_zoo.info` must not import TensorFlow).
"""

from __future__ import annotations  # keras.Model annotations without importing Keras

import datetime
import importlib
import inspect
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from gim_zoo.files import atomic_dir, atomic_write_json
from gim_zoo.modality import AUDIO, IMAGE
from gim_zoo.presets import (CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE, ModelMismatchError,
                             file_pins)

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

ENCODER_CLASSES = tuple(f"gim_zoo>{m.encoder_class_name}" for m in (IMAGE, AUDIO))
# Encoder config fields that are not architecture (a folder may differ in them freely).
NOT_ARCHITECTURE = ("crop_samples",)


def write_model_folder(encoder: keras.Model, folder: str | os.PathLike, name: str,
                       extra_files: dict | None = None) -> Path:
    """Write config/weights/metadata (+ extra {filename: source path or text}) atomically.

    The folder is built in a staging folder beside it and renamed into place
    (gim_zoo.files.atomic_dir), so a reader never sees half a model.

    Raises:
        OSError: the folder cannot be written (nothing is left half-written).
    """
    import keras

    from gim_zoo import __version__

    with atomic_dir(folder) as staging:
        staging.mkdir()
        (staging / CONFIG_FILE).write_text(
            json.dumps(keras.saving.serialize_keras_object(encoder), indent=2) + "\n")
        encoder.save_weights(staging / WEIGHTS_FILE)
        for filename, source in (extra_files or {}).items():
            if isinstance(source, Path):
                shutil.copyfile(source, staging / filename)
            else:
                (staging / filename).write_text(source)
        files = file_pins(staging)
        atomic_write_json(staging / METADATA_FILE, {
            "name": name,
            "keras_version": keras.__version__,
            "gim_zoo_version": __version__,
            "backend": keras.backend.backend(),
            "parameter_count": int(encoder.count_params()),
            "date_saved": datetime.date.today().isoformat(),
            "files": files,
        })
    return Path(folder)


def _comparable(value):
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def check_folder_config(config: dict, spec, source, allow_other_architecture: bool = False):
    """Refuse a folder's config.json that is not `spec`'s encoder.

    The class must match (no opt-out). Every architecture field of the registry spec
    (widths, blocks, strides, image_size, channels, patch geometry, pixel mean/std; for
    audio kernels, strides, channels, gru_units) must match too, unless
    allow_other_architecture=True (a user's own run of another size), which logs the
    differences instead.

    Raises:
        ModelMismatchError: another class, or another architecture without the opt-out.
    """
    want_class = f"gim_zoo>{spec.modality.encoder_class_name}"
    got_class = config.get("registered_name")
    if got_class != want_class:
        got, want = str(got_class).split(">")[-1], want_class.split(">")[-1]
        kind = spec.modality.inputs
        raise ModelMismatchError(
            f"{source} holds an {got}, but {spec.name} is a {want} ({kind} in): this is "
            f"another model's folder; load it under its own name (its metadata.json says "
            f"which) or pass {spec.name}'s own folder")
    cls = spec.modality.encoder_class()
    defaults = inspect.signature(cls.__init__).parameters
    fields = config.get("config", {})
    differences = []
    for key, want in spec.encoder.items():
        if key in NOT_ARCHITECTURE:
            continue
        got = fields.get(key, defaults[key].default if key in defaults else None)
        if _comparable(got) != _comparable(want):
            show = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)
            differences.append(f"{key}={show(got)} (registry: {show(want)})")
    if differences and not allow_other_architecture:
        raise ModelMismatchError(
            f"{source} holds a {want_class.split('>')[-1]} of another architecture than "
            f"{spec.name}: {', '.join(differences)}. If it is your own run of another size, "
            f"load it with allow_other_architecture=True")
    if differences:
        log.info("gim_zoo: %s differs from %s's architecture (allowed): %s", source,
                 spec.name, ", ".join(differences))


def read_encoder(folder: str | os.PathLike, spec=None,
                 allow_other_architecture: bool = False) -> keras.Model:
    """Build the encoder from config.json (safe mode) and load model.weights.h5.

    spec: the registry spec the folder is read as (None: any gim_zoo encoder); its class
      must match, and its architecture too unless allow_other_architecture=True.

    Raises:
        FileNotFoundError: no config.json or model.weights.h5 in the folder.
        ValueError: config.json is not valid JSON or not a gim_zoo encoder class, or the
            weights do not load into it.
        ModelMismatchError: another encoder class or architecture than `spec`'s.
    """
    import keras

    for module in ("audio", "resnet"):  # registers the encoder classes for deserialising
        importlib.import_module(f"gim_zoo.models.{module}")
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a model folder: it has no config.json")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg}: line {e.lineno} column "
                         f"{e.colno})") from None
    if not isinstance(config, dict) or config.get("registered_name") not in ENCODER_CLASSES:
        name = config.get("registered_name") if isinstance(config, dict) else config
        raise ValueError(
            f"{path} describes {name!r}, not a gim_zoo encoder ({', '.join(ENCODER_CLASSES)}); "
            "refusing to deserialise it")
    if spec is not None:
        check_folder_config(config, spec, folder, allow_other_architecture)
    encoder = keras.saving.deserialize_keras_object(config, safe_mode=True)
    load_weights_checked(encoder, folder / WEIGHTS_FILE)
    return encoder


def load_weights_checked(model: keras.Model, path: str | os.PathLike) -> None:
    """model.load_weights with errors that name the file and what is wrong.

    Raises:
        FileNotFoundError: no such file.
        ValueError: it does not load (truncated, corrupted, another architecture).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(
            f"cannot load {path} into {model.name}: {str(e).splitlines()[0]} (a truncated or "
            "corrupted file, or weights of a different architecture)") from e
