"""Config round trip for models that wrap an encoder (GreedyInfoMax, Classifier,
FrameClassifier): the encoder is serialised nested inside the wrapper's config and rebuilt
first when the wrapper is, so `keras.saving.load_model` restores both."""

import keras


class WrapsEncoder:
    """Mixin placed before keras.Model; the class sets `self.encoder`."""

    def get_config(self):
        return {**super().get_config(),
                "encoder": keras.saving.serialize_keras_object(self.encoder)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
