"""Audio encoder for Greedy InfoMax: strided 1-D convolutions then a GRU, one module each.

The paper's audio model (Loewe et al., NeurIPS 2019, after CPC): five Conv1D layers
(kernels 10, 8, 4, 4, 4; strides 5, 4, 2, 2, 2; 512 channels; ReLU) turn a 16 kHz
waveform into one vector per 160 samples (10 ms), and a GRU (256 units) adds context.
GIM makes every conv layer and the GRU a gradient-isolated module with its own InfoNCE
loss (predicting 1..12 steps ahead against 10 negatives): a conv module predicts its own
future outputs; the GRU, as CPC's context network, predicts the future frames of its
input (conv 5's output) from its state (`autoregressive_modules`).

Shapes fit the image code's InfoNCE: a module's output is scored as a (B, frames, 1, C)
grid, time running down the rows. Every module is scored at the output frame rate
(10 ms): the earlier, faster modules' outputs are average-pooled in time to it. That
keeps InfoNCE's all-pairs scoring small on CPU (module 1 has 32x more time steps than
frames) and makes "k steps ahead" mean the same 10k ms for every module. Convolutions
use "same" padding, so any crop whose length is a multiple of 160 gives exactly
crop / 160 frames.
"""

import math

import keras
from keras import layers, ops

from gim_zoo.models.module_stack import build_module_stack
from gim_zoo.models.input_checks import (FeatureModel, InputCheck, check_waveforms,
                                         empty_output, is_array, is_empty_batch)


@keras.saving.register_keras_serializable(package="gim_zoo")
class AudioEncoder(keras.Model):
    """Waveform (B, samples) in [-1, 1] -> (B, samples // hop, C) features; hop = 160."""

    def __init__(self, kernels=(10, 8, 4, 4, 4), strides=(5, 4, 2, 2, 2), channels=512,
                 gru_units=256, crop_samples=20480, unroll_gru=False, **kwargs):
        super().__init__(**kwargs)
        if len(kernels) != len(strides):
            raise ValueError("kernels and strides need one entry per conv layer")
        self.kernels, self.strides = [int(k) for k in kernels], [int(s) for s in strides]
        self.channels, self.gru_units = int(channels), int(gru_units)
        self.hop = math.prod(self.strides)
        self.crop_samples = int(crop_samples)
        self.unroll_gru = bool(unroll_gru)
        if self.crop_samples % self.hop:
            raise ValueError(f"crop_samples ({crop_samples}) must be a multiple of the total "
                             f"stride {self.hop}")
        self.grid = self.crop_samples // self.hop  # frames per training crop
        self.gim_modules = [
            keras.Sequential([layers.Conv1D(self.channels, k, strides=s, padding="same",
                                            activation="relu", name="conv")],
                             name=f"module{i + 1}")
            for i, (k, s) in enumerate(zip(self.kernels, self.strides))
        ]
        self.gim_modules.append(keras.Sequential(
            [layers.GRU(self.gru_units, return_sequences=True, unroll=self.unroll_gru,
                        name="gru")],
            name=f"module{len(self.kernels) + 1}"))
        # the GRU is CPC's context network: its loss predicts conv 5's frames (its input)
        self.autoregressive_modules = (len(self.kernels),)
        # modules i < last conv are pooled in time by the strides still to come
        self._pool = [math.prod(self.strides[i + 1:]) for i in range(len(self.strides))] + [1]
        self.build((None, self.crop_samples))

    @property
    def num_modules(self):
        return len(self.gim_modules)

    @property
    def output_channels(self):
        return [self.channels] * len(self.kernels) + [self.gru_units]

    def build(self, input_shape):
        # an unrolled GRU needs a static time axis; otherwise any length works
        build_module_stack(self.gim_modules,
                           (None, self.crop_samples if self.unroll_gru else None, 1))
        self.built = True

    def check_waveforms(self, waveforms):
        """Refuse a wrong shape or length (always) and NaN/inf values, warn beyond [-1, 1]
        (concrete arrays only, never while tracing): see gim_zoo.models.input_checks."""
        return check_waveforms(waveforms, self.hop, self.name)

    def module_input(self, waveforms):
        """(B, samples) waveform -> (B, samples, 1), refusing other shapes."""
        self.check_waveforms(waveforms)
        return ops.expand_dims(ops.cast(waveforms, "float32"), -1)

    def predict(self, x, *args, **kwargs):
        """keras.Model.predict, after checking in-memory waveforms (shape, NaN/inf, range);
        an empty batch gives an empty (0, samples // hop, C) array."""
        if is_array(x):
            self.check_waveforms(x)
            if x.shape[0] == 0:
                return empty_output((None, x.shape[1] // self.hop, self.output_channels[-1]))
        return super().predict(x, *args, **kwargs)

    def frames(self, h, module_index):
        """Module output (B, T_i, C) -> (B, frames, C) at the output frame rate."""
        size = self._pool[module_index]
        if size == 1:
            return h
        return ops.average_pool(h, size, strides=size, padding="valid")

    def module_grid(self, h, module_index):
        """The (B, frames, 1, C) grid this module's InfoNCE loss scores."""
        return ops.expand_dims(self.frames(h, module_index), 2)

    def module_outputs(self, waveforms, upto=None, training=False):
        """(B, frames, C_k) features of modules 1..upto (default all), at 10 ms frames."""
        if is_empty_batch(waveforms):  # (0, frames, C_k), as for any batch size
            self.check_waveforms(waveforms)
            return [ops.zeros((0, waveforms.shape[1] // self.hop, c))
                    for c in self.output_channels[: upto or self.num_modules]]
        h = self.module_input(waveforms)
        outputs = []
        for i, module in enumerate(self.gim_modules[: upto or self.num_modules]):
            h = module(h, training=training)
            outputs.append(self.frames(h, i))
        return outputs

    def call(self, waveforms, training=False):
        return self.module_outputs(waveforms, training=training)[-1]

    def feature_model(self, module=None, samples=None):
        """Functional model: waveform (B, samples) -> module `module`'s (B, frames, C)."""
        module = module or self.num_modules
        if not 1 <= module <= self.num_modules:
            raise ValueError(f"module must be in 1..{self.num_modules}, got {module}")
        waveforms = keras.Input((samples or self.crop_samples,), name="waveform")
        # checks concrete inputs of eager calls; an identity while tracing or exporting
        checked = InputCheck("waveforms", hop=self.hop, encoder_name=self.name,
                             name="input_check")(waveforms)
        features = self.module_outputs(checked, upto=module)[-1]
        return FeatureModel(waveforms, features, name=f"{self.name}_module{module}")

    def export_model(self, module=None, samples=None):
        """`feature_model` of a twin with the GRU unrolled over the fixed frame count: the
        TFLite converter's builtin ops cannot express the GRU's while-loop (TensorList)."""
        samples = samples or self.crop_samples
        twin = AudioEncoder(**{**self.get_config(), "unroll_gru": True,
                               "crop_samples": samples})
        twin.set_weights(self.get_weights())
        return twin.feature_model(module, samples)

    def get_config(self):
        return {**super().get_config(), "kernels": self.kernels, "strides": self.strides,
                "channels": self.channels, "gru_units": self.gru_units,
                "crop_samples": self.crop_samples, "unroll_gru": self.unroll_gru}
