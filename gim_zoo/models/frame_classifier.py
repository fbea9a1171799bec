"""Per-frame classifier on an audio encoder: the supervised audio baseline.

The paper's supervised baseline for speech trains the same encoder end-to-end on the
labels of the downstream task. Here that is the phone of every 10 ms frame: the encoder's
(B, frames, C) output goes through one softmax layer per frame, and the whole network is
trained with cross-entropy. Padded frames (label -1 in the speech corpus) carry a zero
sample weight (`speech_corpus.phone_targets`), so they count in neither the loss nor the accuracy.
"""

import keras

from gim_zoo.models.encoder_wrapper import WrapsEncoder
from keras import layers


@keras.saving.register_keras_serializable(package="gim_zoo")
class FrameClassifier(WrapsEncoder, keras.Model):
    """waveform (B, samples) -> encoder -> Dense(num_classes, softmax) per frame."""

    def __init__(self, encoder, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.num_classes = int(num_classes)
        # float32 under mixed precision too: softmax and cross-entropy in float32
        self.head = layers.Dense(self.num_classes, activation="softmax", name="head",
                                 dtype="float32")
        self.head.build((None, None, encoder.output_channels[-1]))
        self.built = True

    def call(self, waveforms, training=False):
        return self.head(self.encoder(waveforms, training=training))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


