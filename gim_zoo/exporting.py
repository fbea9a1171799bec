"""Export Keras models to SavedModel and TFLite (fp32, int8), and run .tflite with LiteRT.

Built on `model.export` (Keras' own exporters). TFLite files use builtin ops only (no
SELECT_TF_OPS), so they run on a plain LiteRT runtime. int8 is post-training quantisation
with representative images from the training set; inputs and outputs stay float32, so
the same raw 0..255 images go in.
"""

import os
from pathlib import Path

import numpy as np

from gim_zoo.files import OutputExistsError, atomic_dir  # noqa: F401  (importable here)

# What a SavedModel folder may hold (TensorFlow's layout); a folder with anything else in
# it is not replaced, --overwrite or not: the rest is somebody's.
SAVED_MODEL_ENTRIES = {"saved_model.pb": "file", "fingerprint.pb": "file",
                       "keras_metadata.pb": "file", "variables": "dir", "assets": "dir"}


def _foreign_entries(folder):
    """Entries of `folder` that are not part of a SavedModel (links count as foreign)."""
    foreign = []
    for entry in Path(folder).iterdir():
        kind = SAVED_MODEL_ENTRIES.get(entry.name)
        if entry.is_symlink() or kind is None or (kind == "dir") != entry.is_dir():
            foreign.append(entry.name)
        elif entry.name == "variables":
            foreign += [f"variables/{v.name}" for v in entry.iterdir()
                        if v.is_symlink() or not v.is_file()
                        or not v.name.startswith("variables.")]
        elif entry.name == "assets":
            foreign += [f"assets/{a.relative_to(entry)}" for a in entry.rglob("*")
                        if a.is_symlink()]
    return sorted(foreign)


def check_output(path, overwrite=False, directory=False):
    """Refuse to replace what an export did not write: anything unless `overwrite`, and
    never a symbolic link (an export replaces paths, it does not write through links),
    a folder where a file goes, or a folder that holds anything but a SavedModel (a
    user's other files in it would be deleted with it)."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink():
        raise OutputExistsError(f"{path} is a symbolic link; exports never write through "
                                "links: choose another --out")
    if directory and not (path.is_dir() and (path / "saved_model.pb").is_file()):
        raise OutputExistsError(f"{path} exists and is not a SavedModel; refusing to "
                                "replace it: choose another --out")
    if directory and _foreign_entries(path):
        raise OutputExistsError(
            f"{path} holds a SavedModel and other files ({', '.join(_foreign_entries(path)[:4])}"
            "); replacing it would delete them, --overwrite or not: move them out or choose "
            "another --out")
    if not directory and path.is_dir():
        raise OutputExistsError(f"{path} is a folder; refusing to replace it with a file: "
                                "choose another --out")
    if not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite (overwrite=True) "
                                "to replace it")


def _export_via_staging(path, overwrite, directory, write):
    """write(staging path) through atomic_dir (a fresh private folder next to `path`:
    nothing is left behind and nothing is written outside it), checking `path` before
    and again just before the rename."""
    check_output(path, overwrite, directory)
    with atomic_dir(path) as staged:
        write(staged)
        check_output(path, overwrite, directory)  # nothing appeared meanwhile
    return Path(path)


def export_saved_model(model, path, overwrite=True):
    """SavedModel with a `serve` signature taking images (batch, H, W, C) float32.

    overwrite=False refuses an existing `path`; True replaces a SavedModel there, but
    never another folder, a file or a symbolic link."""
    return _export_via_staging(
        path, overwrite, True,
        lambda staged: model.export(str(staged), format="tf_saved_model", verbose=False))


def export_tflite(model, path, quantize=None, representative_images=None, samples=200,
                  sparse=False, overwrite=True):
    """Write a .tflite: quantize=None (fp32) or "int8" (needs representative_images).

    overwrite=False refuses an existing `path`; True replaces a file there, but never a
    folder or a symbolic link.

    sparse: let the converter store mostly-zero weight tensors in TFLite's sparse format
    (Optimize.EXPERIMENTAL_SPARSITY), which is what makes a pruned ticket's file smaller.
    """
    import tensorflow as tf  # the TFLite converter is TensorFlow's

    path = Path(path)
    if path.suffix != ".tflite":
        raise ValueError(f"TFLite files must end in .tflite, got {path}")
    options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize == "int8":
        if representative_images is None:
            raise ValueError("int8 quantisation needs representative_images")
        images = np.asarray(representative_images, np.float32)[:samples]

        def representative_dataset():
            for image in images:
                yield [image[None]]

        options = {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": representative_dataset,
            "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                              tf.lite.OpsSet.TFLITE_BUILTINS]},
        }
    elif quantize is not None:
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    if sparse:
        options["optimizations"] = [*options.get("optimizations", []),
                                    tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return _export_via_staging(
        path, overwrite, False,
        lambda staged: model.export(str(staged), format="litert", verbose=False, **options))


class TFLiteModel:
    """A .tflite file run by LiteRT (ai_edge_litert), called like a Keras model on numpy."""

    def __init__(self, path, num_threads=None):
        self.path = Path(path)
        self.num_threads = num_threads
        self.delegated = True  # XNNPACK, LiteRT's default CPU delegate
        self._open()

    def _open(self):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = (OpResolverType.AUTO if self.delegated
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.num_threads,
                                       experimental_op_resolver_type=resolver)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._batch = None

    @property
    def input_shape(self):
        return tuple(int(d) for d in self.input["shape_signature"])

    def __call__(self, images):
        images = np.asarray(images, np.float32)
        expected = self.input_shape[1:]
        if images.shape[1:] != expected:
            raise ValueError(f"{self.path.name} expects images of shape (batch, "
                             f"{', '.join(map(str, expected))}); got {images.shape}")
        if images.shape[0] != self._batch:
            self.interpreter.resize_tensor_input(self.input["index"], images.shape)
            self.interpreter.allocate_tensors()
            self._batch = images.shape[0]
        self.interpreter.set_tensor(self.input["index"], images)
        try:
            self.interpreter.invoke()
        except RuntimeError as e:
            # XNNPACK cannot run some layouts (int8 weights in the sparse format): fall
            # back to LiteRT's builtin kernels, which can.
            if not self.delegated or "delegate" not in str(e):
                raise
            self.delegated = False
            self._open()
            return self(images)
        return self.interpreter.get_tensor(self.output["index"]).copy()
