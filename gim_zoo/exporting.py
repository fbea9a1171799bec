"""Export Keras models to SavedModel and TFLite (fp32, int8), and run .tflite with LiteRT.

Built on `model.export` (Keras' own exporters). TFLite files use builtin ops only (no
SELECT_TF_OPS), so they run on a plain LiteRT runtime. int8 is post-training quantisation
with representative images from the training set; inputs and outputs stay float32, so
the same raw 0..255 images go in.
"""

import os
import shutil
from pathlib import Path

import numpy as np


def _replace_atomically(tmp, path):
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def export_saved_model(model, path):
    """SavedModel with a `serve` signature taking images (batch, H, W, C) float32."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.export(str(tmp), format="tf_saved_model", verbose=False)
    return _replace_atomically(tmp, path)


def export_tflite(model, path, quantize=None, representative_images=None, samples=200,
                  sparse=False):
    """Write a .tflite: quantize=None (fp32) or "int8" (needs representative_images).

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    model.export(str(tmp), format="litert", verbose=False, **options)
    return _replace_atomically(tmp, path)


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
