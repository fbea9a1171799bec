"""The user-facing zoo: load(), info().

    encoder = gim_zoo.load("gim-fmnist-resnet")        # pretrained, verified, offline-capable
    features = encoder.feature_model(module=2, pool_to=3)(images)   # any module, 3x3-pooled

    encoder = gim_zoo.load("gim-espeak-audio")         # 16 kHz waveforms -> 10 ms frames
"""

import os
import warnings
from pathlib import Path

import keras

from gim_zoo import presets, registry
from gim_zoo.catalog import info  # noqa: F401  (TensorFlow-free; gim_zoo.info is it)
from gim_zoo.presets import (InstallationError, IntegrityError,  # noqa: F401  (for users)
                             ModelMismatchError, WeightsNotAvailableError,
                             load_weights_checked, read_encoder)
from gim_zoo.models.input_checks import (InputRangeWarning, check_images,  # noqa: F401
                                         check_waveforms)
from gim_zoo.registry import UnknownModelError  # noqa: F401  (re-exported for users)


class UnverifiedFolderWarning(UserWarning):
    """A model folder loaded without sha256 pins (it has no metadata.json)."""


def load(name: str, weights: str | os.PathLike | None = "pretrained",
         revision: str | None = None, hub_repo: str | None = None,
         local_dir: str | os.PathLike | None = None,
         cache_dir: str | os.PathLike | None = None, endpoint: str | None = None,
         allow_other_architecture: bool = False) -> keras.Model:
    """A Keras encoder: image models take raw 0..255 images and give a (B, 7, 7, C) patch
    grid; audio models take (B, samples) 16 kHz waveforms and give (B, samples // 160, C).

    weights: "pretrained" (local folder -> Hub -> bundled copy, sha256-verified against the
      package's manifest), None (random init), or a path: a model folder or a
      `.weights.h5` file (e.g. a run's encoder.weights.h5).
    revision, hub_repo, cache_dir, endpoint: Hub options (a branch, tag or commit sha);
      by default the repository and commit the package manifest records for `name`.
    local_dir: a folder holding this model's files (or one sub-folder per model).
    allow_other_architecture: a folder must hold `name`'s encoder class, and by default its
      registered architecture (widths, blocks, image size...); pass True to load your own
      run of another size under this name (the class is always checked). A weights file
      must hold exactly the registered encoder's arrays (paths and shapes); True loads the
      arrays that match, with a warning naming the rest. A folder's files are checked against its own metadata.json (which guards
      against damage, not against tampering: only the package's manifest is a trust
      anchor); a folder without one loads with an UnverifiedFolderWarning.

    Raises:
        UnknownModelError: `name` is not in the registry (the message lists close matches).
        WeightsNotAvailableError: weights="pretrained" but the model is not published, or
            no source (local folder, Hub, bundled copy) holds it.
        IntegrityError: a file differs from its pinned sha256 or is missing, or a list of
            pins names a path outside its folder.
        InstallationError: the package manifest (gim_zoo/pretrained/manifest.json) is
            missing or unreadable (weights="pretrained").
        ModelMismatchError: the folder holds another encoder class, or (folder or weights
            file) another architecture without allow_other_architecture=True.
        FileNotFoundError: `weights` is no folder, no file and not "pretrained".
        ValueError: a weights file or config.json that does not load.
    """
    spec = registry.get(name)
    if weights is None:
        return spec.build_encoder()
    if isinstance(weights, str) and weights == "pretrained":
        folder = presets.resolve(spec, hub_repo, revision, local_dir, cache_dir, endpoint)
        # every file, config.json included, matches the package's pins for `name`: the
        # architecture is the published one; the class is still checked
        return read_encoder(folder, spec, allow_other_architecture=True)
    if isinstance(weights, (str, os.PathLike)) and not str(weights).strip():
        raise ValueError("weights='' names no file or folder (it would read as the current "
                         "folder): pass 'pretrained', None, a model folder or a .weights.h5 "
                         "file")
    path = Path(weights)
    if path.is_dir():
        if (path / presets.METADATA_FILE).is_file():
            presets.verify_folder(path, presets.folder_pins(path))
            _warn_if_named_otherwise(path, name)
        else:
            warnings.warn(
                f"{path} has no metadata.json: its files are not sha256-verified (no pins to "
                "check them against); loading it as is", UnverifiedFolderWarning, stacklevel=2)
        return read_encoder(path, spec, allow_other_architecture)
    if path.is_file():
        encoder = spec.build_encoder()
        load_weights_checked(encoder, path, allow_other_architecture,
                             described_as=f"{name}'s encoder")
        return encoder
    raise FileNotFoundError(
        f"weights={weights!r} is neither 'pretrained', None, a model folder nor a weights file")


def _warn_if_named_otherwise(folder, name):
    try:
        saved_as = presets.read_metadata(folder).get("name")
    except (OSError, ValueError, AttributeError):
        return
    if saved_as and saved_as != name:
        warnings.warn(f"{folder}'s metadata.json says it holds {saved_as!r}, not {name!r}; "
                      f"loading it as {name!r} all the same", UserWarning, stacklevel=3)
