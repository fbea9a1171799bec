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

from gim_zoo.files import OutputExistsError, atomic_dir, atomic_write_json, describe_contents
from gim_zoo.modality import AUDIO, IMAGE
from gim_zoo.presets import (CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE, IntegrityError,
                             ModelMismatchError, file_pins, folder_pins, verify_folder)

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

ENCODER_CLASSES = tuple(f"gim_zoo>{m.encoder_class_name}" for m in (IMAGE, AUDIO))
# Encoder config fields that are not architecture (a folder may differ in them freely).
NOT_ARCHITECTURE = ("crop_samples",)


def not_a_model_folder(folder: str | os.PathLike) -> str | None:
    """None if `folder` is provably a model folder as write_model_folder left it (a real
    folder holding exactly the files its metadata.json pins, no other file, no
    sub-folder, no link, each with its pinned sha256), else why not, in words. Only
    such a folder is ever replaced: anything else in it (a user's notes, an edited card)
    would be lost."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return "it is not a folder"
    try:
        pins = folder_pins(folder)
    except (OSError, IntegrityError) as e:
        return f"it holds {describe_contents(folder)}, and no readable {METADATA_FILE} ({e})"
    entries = list(folder.iterdir())
    extra = sorted(e.name + ("/" if e.is_dir() else "") for e in entries
                   if e.name not in set(pins) | {METADATA_FILE})
    if extra:
        return f"it also holds {', '.join(extra[:4])}, which its {METADATA_FILE} does not list"
    linked = sorted(e.name for e in entries if e.is_symlink() or not e.is_file())
    if linked:
        return f"{', '.join(linked)} are links or folders"
    try:
        verify_folder(folder, pins)
    except (OSError, IntegrityError) as e:
        return f"a file differs from what it was written as ({str(e).splitlines()[0]})"
    return None


def is_model_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a model folder gim_zoo wrote, unchanged (not_a_model_folder)."""
    return not_a_model_folder(folder) is None


def check_model_folder_target(folder: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuse to write a model folder where it would replace what is not one: an existing
    file or link, a non-empty folder that is not a model folder gim_zoo wrote
    (is_model_folder), or, without `overwrite`, a model folder. An absent or empty
    folder is fine.

    Raises:
        OutputExistsError: the message names the folder and what it holds.
    """
    folder = Path(folder)
    if not os.path.lexists(folder):
        return
    if folder.is_symlink():
        raise OutputExistsError(f"{folder} is a symbolic link; a model folder is never "
                                "written through a link: choose another folder")
    if not folder.is_dir():
        raise OutputExistsError(f"{folder} is a file, not a folder: choose another folder")
    if not any(folder.iterdir()):
        return
    problem = not_a_model_folder(folder)
    if problem:
        raise OutputExistsError(
            f"{folder} is not empty and is not a model folder gim_zoo wrote: {problem}. "
            "Refusing to replace it, --overwrite or not: choose a new or empty folder")
    if not overwrite:
        raise OutputExistsError(f"{folder} already holds a model folder; pass --overwrite "
                                "(overwrite=True) to replace it")


def write_model_folder(encoder: keras.Model, folder: str | os.PathLike, name: str,
                       extra_files: dict | None = None, overwrite: bool = False) -> Path:
    """Write config/weights/metadata (+ extra {filename: source path or text}) atomically.

    The folder is built in a staging folder beside it and renamed into place
    (gim_zoo.files.atomic_dir), so a reader never sees half a model. An existing folder
    is replaced only if it is a model folder gim_zoo wrote and `overwrite` is set
    (check_model_folder_target, checked before and again just before the rename).

    Raises:
        OutputExistsError: `folder` holds something that is not to be replaced.
        OSError: the folder cannot be written (nothing is left half-written).
    """
    import keras

    from gim_zoo import __version__

    check_model_folder_target(folder, overwrite)
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
        check_model_folder_target(folder, overwrite)  # nothing appeared meanwhile
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


def weights_in_file(path: str | os.PathLike) -> dict:
    """{variable path: shape} of every array in a Keras `.weights.h5` file."""
    import h5py

    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, tuple(obj.shape))
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def weights_of_model(model: keras.Model) -> dict:
    """{variable path: shape} as `model.save_weights` would write them: what a weights
    file must hold, exactly, to be this model's (Keras' own layout, not a guess at it)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gim_zoo-weights-") as tmp:
        path = Path(tmp) / "expected.weights.h5"
        model.save_weights(path)
        return weights_in_file(path)


def weight_differences(expected: dict, found: dict, limit: int = 4) -> list:
    """What differs between two {variable path: shape} tables, in words (at most `limit`
    examples of each kind)."""
    def some(items):
        items = sorted(items)
        return ", ".join(items[:limit]) + (f" and {len(items) - limit} more"
                                           if len(items) > limit else "")

    missing = set(expected) - set(found)
    extra = set(found) - set(expected)
    reshaped = [f"{k} {list(found[k])} (model: {list(expected[k])})"
                for k in set(expected) & set(found) if found[k] != expected[k]]
    differences = []
    if missing:
        differences.append(f"{len(missing)} of the model's {len(expected)} arrays are not "
                           f"in the file ({some(missing)})")
    if extra:
        differences.append(f"{len(extra)} of the file's {len(found)} arrays are not the "
                           f"model's ({some(extra)})")
    if reshaped:
        differences.append(f"{len(reshaped)} arrays have another shape ({some(reshaped)})")
    return differences


def load_weights_checked(model: keras.Model, path: str | os.PathLike,
                         allow_other_architecture: bool = False,
                         described_as: str | None = None) -> None:
    """model.load_weights, after checking that the file holds exactly the model's arrays
    (same paths, same shapes, same count): Keras loads by layer path and leaves out what
    does not match, so a deeper model's file would fill a shallower model in part,
    silently. Errors name the file and what is wrong.

    allow_other_architecture: load what matches all the same (Keras' own partial load),
      with a warning that lists the differences.
    described_as: the model in messages (default: its Keras name).

    Raises:
        FileNotFoundError: no such file.
        ModelMismatchError: the file holds another architecture's weights.
        ValueError: it does not load (truncated, corrupted).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        found = weights_in_file(path)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"cannot load {path} into {model.name}: {str(e).splitlines()[0]} "
                         "(a truncated or corrupted file, or not a Keras .weights.h5 file)"
                         ) from e
    if not model.built:
        raise ValueError(f"{model.name} is not built; build it before loading {path}")
    expected = weights_of_model(model)
    if not any(k.startswith("optimizer/") for k in expected):
        # a compiled model's file also holds its optimizer's state: no part of the
        # architecture, and Keras loads none of it into a model without an optimizer
        found = {k: v for k, v in found.items() if not k.startswith("optimizer/")}
    differences = weight_differences(expected, found)
    described_as = described_as or model.name
    if differences and not allow_other_architecture:
        raise ModelMismatchError(
            f"{path} holds the weights of another architecture than {described_as}: "
            f"{'; '.join(differences)}. Load it into the model it was saved from (its run's "
            "config.json or model folder says which); allow_other_architecture=True loads "
            "what matches and leaves the rest as it is")
    if differences:
        log.warning("gim_zoo: %s differs from %s (allowed, only matching arrays load): %s",
                    path, described_as, "; ".join(differences))
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(
            f"cannot load {path} into {model.name}: {str(e).splitlines()[0]} (a truncated or "
            "corrupted file, or weights of a different architecture)") from e
