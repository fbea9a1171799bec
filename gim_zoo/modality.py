"""Image or audio, said once.

The registry gives each model spec its modality (`spec.modality`, its data source's);
code that differs between images and speech asks the modality instead of branching on
it: the encoder class and what it takes in, the supervised model, the inputs that
calibrate int8 export, and the features an export writes. Experiment code (training/)
keys its own per-modality pieces (training pipelines, card sections) by `modality.name`.

Imports nothing heavy at module level: `gim_zoo.info` (no TensorFlow) reads specs. Nor
anything of gim_zoo.data: data sources point at their modality (gim_zoo.data.sources
imports this module), never the other way round.
"""

import dataclasses
import importlib

SAMPLE_RATE = 16_000
# Samples per audio encoder frame: 10 ms at 16 kHz, the product of the conv strides.
FRAME_HOP = 160


@dataclasses.dataclass(frozen=True)
class Modality:
    """What a modality is, as data; subclasses say what it does differently."""
    name: str
    inputs: str  # what the encoder takes, in words (error messages)
    encoder_module: str
    encoder_class_name: str

    def encoder_class(self):
        """The encoder's Keras class (imported on first use: Keras is heavy)."""
        return getattr(importlib.import_module(self.encoder_module), self.encoder_class_name)


class ImageModality(Modality):
    """Images through a patch-grid ResNet encoder."""

    def supervised_model(self, encoder, num_classes):
        """The encoder trained end to end with labels: a pooled linear classifier."""
        from gim_zoo.models.probe import Classifier

        return Classifier(encoder, num_classes, frozen=False, name="supervised")

    def calibration_inputs(self, spec, data_dir=None, count=200, source=None, encoder=None):
        """Training images that calibrate int8 export, as `encoder` (default: the spec's
        registered one) takes them: `source`'s (default: the spec's) resized, cropped and
        converted to the encoder's input."""
        config = encoder.get_config() if encoder is not None else spec.encoder
        source = (source or spec.dataset).fitted(config["image_size"], config["channels"],
                                                 like=spec.dataset)
        return source.calibration_inputs(data_dir, count)

    def export_model(self, encoder, spec, module=None, saved_model=False, grid=False,
                     pool_to=0):
        """What an export writes: module features pooled to pool_to x pool_to (0: the
        spec's probe pooling), or the whole grid."""
        pool = None if grid else (pool_to or spec.probe_pool_to)
        return encoder.feature_model(module, pool_to=pool)


class AudioModality(Modality):
    """Raw 16 kHz waveforms through the strided-conv + GRU encoder."""

    def supervised_model(self, encoder, num_classes):
        """The encoder trained end to end with labels: a per-frame phone classifier."""
        from gim_zoo.models.frame_classifier import FrameClassifier

        return FrameClassifier(encoder, num_classes, name="supervised")

    def calibration_inputs(self, spec, data_dir=None, count=200, source=None, encoder=None):
        """Waveform crops of the speech corpus's training split."""
        return (source or spec.dataset).calibration_inputs(spec.encoder["crop_samples"],
                                                           data_dir, count)

    def export_model(self, encoder, spec, module=None, saved_model=False, grid=False,
                     pool_to=0):
        """Per-frame features of waveform crops; for TFLite the GRU is unrolled."""
        return (encoder.feature_model if saved_model else encoder.export_model)(module)


IMAGE = ImageModality("image", "images", "gim_zoo.models.resnet", "PatchResNetEncoder")
AUDIO = AudioModality("audio", "16 kHz waveforms", "gim_zoo.models.audio", "AudioEncoder")
