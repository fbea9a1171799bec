"""Keras callbacks: lottery-ticket pruning with rewind, RIFLE head re-initialisation."""

from gim_zoo.callbacks.lottery import MaskConstraint, PruneWithRewind, PruningMasks
from gim_zoo.callbacks.rifle import RIFLE, rifle_epochs

__all__ = ["RIFLE", "MaskConstraint", "PruneWithRewind", "PruningMasks", "rifle_epochs"]
