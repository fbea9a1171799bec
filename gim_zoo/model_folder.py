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
"""

import datetime
import inspect
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import keras

from gim_zoo.hub import ModelMismatchError
from gim_zoo.models import audio, resnet  # noqa: F401  registers the encoder classes
from gim_zoo.runs import atomic_write_json

log = logging.getLogger(__name__)

ENCODER_CLASSES = ("gim_zoo>PatchResNetEncoder", "gim_zoo>AudioEncoder")
# Encoder config fields that are not architecture (a folder may differ in them freely).
NOT_ARCHITECTURE = ("crop_samples",)


def write_model_folder(encoder: keras.Model, folder: str | os.PathLike, name: str,
                       extra_files: dict | None = None) -> Path:
    """Write config/weights/metadata (+ extra {filename: source path or text}) atomically.

    The folder is built in a temporary sibling and renamed into place, so a reader never
    sees half a model.

    Raises:
        OSError: the folder cannot be written (nothing is left half-written).
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
    want_class = "gim_zoo>AudioEncoder" if spec.is_audio else "gim_zoo>PatchResNetEncoder"
    got_class = config.get("registered_name")
    if got_class != want_class:
        got, want = str(got_class).split(">")[-1], want_class.split(">")[-1]
        kind = "16 kHz waveforms" if spec.is_audio else "images"
        raise ModelMismatchError(
            f"{source} holds an {got}, but {spec.name} is a {want} ({kind} in): this is "
            f"another model's folder; load it under its own name (its metadata.json says "
            f"which) or pass {spec.name}'s own folder")
    cls = audio.AudioEncoder if spec.is_audio else resnet.PatchResNetEncoder
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
    folder = Path(folder)
    path = folder / "config.json"
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
    load_weights_checked(encoder, folder / "model.weights.h5")
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
