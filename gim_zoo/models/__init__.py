"""Layers, encoders, losses and the models that train them (Keras 3).

Importing `gim_zoo.models` registers every serialisable class of the package's models
(`register_keras_serializable(package="gim_zoo")`), so a saved config.json deserialises
with plain `keras.saving.deserialize_keras_object` after this one import; a bare
`import gim_zoo` stays cheap because it does not import this package.
"""

from gim_zoo.models.audio import AudioEncoder
from gim_zoo.models.autoregressor import RowCausalContext
from gim_zoo.models.frame_classifier import FrameClassifier
from gim_zoo.models.gim import GreedyInfoMax
from gim_zoo.models.infonce import InfoNCE
from gim_zoo.models.input_checks import FeatureModel, InputCheck
from gim_zoo.models.patches import GridAveragePool, ImagePatches, PatchGridPool
from gim_zoo.models.probe import Classifier
from gim_zoo.models.resnet import PatchResNetEncoder

__all__ = ["AudioEncoder", "Classifier", "FeatureModel", "FrameClassifier", "GreedyInfoMax",
           "GridAveragePool", "ImagePatches", "InfoNCE", "InputCheck", "PatchGridPool",
           "PatchResNetEncoder", "RowCausalContext"]
