"""What an encoder's input must look like, checked on concrete arrays only.

The image encoders take raw 0..255 pixels and normalise inside; the audio encoders take
16 kHz waveforms in [-1, 1]. Images already scaled to 0..1 (or standardised) and int16
PCM still run, but give completely different features, and a NaN or inf spreads through
every feature of its image. So:

- a wrong shape is refused (always, also while tracing) with the expected and the actual
  shape;
- NaN/inf values are refused, and values outside the expected range warn
  (`InputRangeWarning`), but only where the values exist in Python: numpy arrays and eager
  tensors (`encoder(x)`, `encoder.predict(x)`, `feature_model(x)`, `.predict(x)`).
  Symbolic tensors (`keras.Input`, a `tf.function` / `jax.jit` trace, `model.export`,
  the TFLite converter, the steps inside `fit`/`predict`) are never looked at, so the
  checks add nothing to a traced graph or an exported file.

`check_images` / `check_waveforms` are the public helpers; `InputCheck` is the (weightless,
identity) layer that runs them inside a feature model's eager calls, and `FeatureModel`
is the functional model `encoder.feature_model()` returns, whose `predict` checks the
whole input first and returns an empty batch for an empty input.

An empty batch (0 examples) gives an empty result of the right shape, (0, ...) as for any
other batch size, through `encoder(x)`, `encoder.predict(x)` and a feature model's call
and predict: Keras' layers fail on it (a convolution of 0 patches) or give a wrong shape.
"""

import sys
import warnings

import keras
import numpy as np


class InputRangeWarning(UserWarning):
    """Inputs whose values look like another scale than the encoder expects."""


def concrete_values(x):
    """x as a numpy array when its values exist now (numpy, lists, eager tensors), else
    None (a symbolic tensor: keras.Input, a tf.function or jax.jit trace, an export)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        try:
            return np.asarray(x)
        except (ValueError, TypeError):
            return None
    if isinstance(x, keras.KerasTensor):
        return None
    tf = sys.modules.get("tensorflow")
    if tf is not None and tf.is_tensor(x):
        if tf.is_symbolic_tensor(x) or not hasattr(x, "numpy"):
            return None
        return x.numpy()
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.core.Tracer):
        return None
    if keras.ops.is_tensor(x):
        try:
            return np.asarray(keras.ops.convert_to_numpy(x))
        except Exception:  # noqa: BLE001  a backend's symbolic value: nothing to check
            return None
    return None


def _shape(x):
    return tuple(None if d is None else int(d) for d in x.shape)


def _refuse_non_finite(values, what):
    if not np.issubdtype(values.dtype, np.floating):
        return
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(values.size - np.count_nonzero(finite))
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"{what} hold {bad} NaN or inf value{'s' if bad != 1 else ''} (first at index "
            f"{first}); every feature of that input would be NaN. Clean or drop them first.")


def check_images(images, image_size, channels=None, name="encoder"):
    """Refuse images that a PatchResNetEncoder cannot encode as meant; returns `images`.

    image_size: the encoder's (or pass the encoder itself as image_size).
    Raises ValueError for a shape other than (batch, image_size, image_size, channels),
    and, for concrete arrays, for NaN/inf values. Warns (InputRangeWarning) when a batch
    looks scaled to 0..1 (max in (0, 1]) or is outside 0..255 (standardised, say).
    """
    if hasattr(image_size, "image_size"):  # an encoder
        name, channels, image_size = image_size.name, image_size.channels, image_size.image_size
    expected = (int(image_size), int(image_size), int(channels))
    shape = _shape(images)
    if len(shape) != 4 or shape[1:] != expected:
        raise ValueError(
            f"{name} expects images of shape (batch, {expected[0]}, {expected[1]}, "
            f"{expected[2]}) with raw pixel values 0..255; got shape {shape}")
    values = concrete_values(images)
    if values is None or values.size == 0:
        return images
    _refuse_non_finite(values, f"the images given to {name}")
    low, high = float(values.min()), float(values.max())
    if 0 < high <= 1.0:
        warnings.warn(
            f"the images given to {name} range {low:g}..{high:g} (max {high:g}): they look "
            "scaled to 0..1, but the encoder expects raw 0..255 pixels and normalises "
            "inside; multiply them by 255 (its features for 0..1 images are meaningless)",
            InputRangeWarning, stacklevel=3)
    elif low < 0 or high > 255:
        warnings.warn(
            f"the images given to {name} range {low:g}..{high:g}, outside 0..255: the "
            "encoder expects raw 0..255 pixels and normalises inside (pass the images "
            "before any normalisation)", InputRangeWarning, stacklevel=3)
    return images


# Peak amplitude above which a waveform is taken for unscaled PCM rather than [-1, 1]
# audio with a little overshoot (resampling, mixing).
WAVEFORM_PEAK = 1.01


def check_waveforms(waveforms, hop=1, name="encoder"):
    """Refuse waveforms that an AudioEncoder cannot encode as meant; returns `waveforms`.

    Raises ValueError for a shape other than (batch, samples), a length that is not a
    multiple of `hop` and, for concrete arrays, NaN/inf values. Warns (InputRangeWarning)
    when the peak amplitude is beyond [-1, 1] (int16 PCM not divided by 32768, say).
    """
    shape = _shape(waveforms)
    if len(shape) != 2:
        raise ValueError(f"{name} expects waveforms of shape (batch, samples) at 16 kHz in "
                         f"[-1, 1]; got shape {shape}")
    if shape[1] is not None and shape[1] < hop:
        raise ValueError(f"{name} needs waveforms of at least one {hop}-sample frame "
                         f"({1000 * hop // 16000} ms at 16 kHz); got {shape[1]} samples")
    if shape[1] is not None and shape[1] % hop:
        raise ValueError(f"{name} needs a length that is a multiple of {hop} samples; got "
                         f"{shape[1]}")
    values = concrete_values(waveforms)
    if values is None or values.size == 0:
        return waveforms
    _refuse_non_finite(values, f"the waveforms given to {name}")
    peak = float(np.abs(values).max())
    if peak > WAVEFORM_PEAK:
        warnings.warn(
            f"the waveforms given to {name} peak at {peak:g}, beyond [-1, 1]: the encoder "
            "expects float audio in [-1, 1] (divide int16 PCM by 32768)",
            InputRangeWarning, stacklevel=3)
    return waveforms


@keras.saving.register_keras_serializable(package="gim_zoo")
class InputCheck(keras.layers.Layer):
    """Identity layer that runs `check_images` / `check_waveforms` on concrete inputs.

    Weightless, and a no-op while tracing, so exported graphs and TFLite files are the
    same as without it.
    """

    def __init__(self, kind="images", image_size=None, channels=None, hop=1,
                 encoder_name="encoder", **kwargs):
        super().__init__(**kwargs)
        if kind not in ("images", "waveforms"):
            raise ValueError(f"kind must be 'images' or 'waveforms', got {kind!r}")
        self.kind, self.hop, self.encoder_name = kind, int(hop), encoder_name
        self.image_size = None if image_size is None else int(image_size)
        self.channels = None if channels is None else int(channels)

    def check(self, x):
        if self.kind == "images":
            return check_images(x, self.image_size, self.channels, self.encoder_name)
        return check_waveforms(x, self.hop, self.encoder_name)

    def call(self, x):
        self.check(x)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "image_size": self.image_size,
                "channels": self.channels, "hop": self.hop,
                "encoder_name": self.encoder_name}


def is_empty_batch(x):
    """Whether `x` is a batch known to hold no examples (a static batch size of 0: an
    empty array or eager tensor; never a symbolic tensor of unknown batch size)."""
    shape = getattr(x, "shape", None)
    return shape is not None and len(shape) > 0 and shape[0] == 0


def is_array(x):
    """An in-memory batch (numpy, a tensor), not a tf.data.Dataset or a generator."""
    return isinstance(x, np.ndarray) or keras.ops.is_tensor(x)


def empty_output(shape):
    """The empty (0, ...) float32 output of a model whose output shape is `shape`."""
    return np.zeros((0, *shape[1:]), "float32")


@keras.saving.register_keras_serializable(package="gim_zoo")
class FeatureModel(keras.Model):
    """A functional feature model (images or waveforms -> features) whose `predict` checks
    in-memory input first (shape, NaN/inf, range: see `InputCheck`) and gives a (0, ...)
    array for an empty batch instead of Keras' error. Build it like keras.Model(inputs,
    outputs); everything else is Keras' functional model."""

    def _input_check(self):
        return next((layer for layer in self.layers if isinstance(layer, InputCheck)), None)

    def predict(self, x, *args, **kwargs):
        check = self._input_check()
        if check is not None and is_array(x):
            check.check(x)
            if x.shape[0] == 0:
                return empty_output(self.output_shape)
        return super().predict(x, *args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        if is_empty_batch(inputs):  # concrete and empty: the layers would fail on it
            check = self._input_check()
            if check is not None:
                check.check(inputs)
            return keras.ops.zeros((0, *self.output_shape[1:]))
        return super().call(inputs, training=training, mask=mask, **kwargs)
