"""Keras callbacks: lottery-ticket pruning with rewind, RIFLE, symmetry teleportation."""

from gim_zoo.callbacks.lottery import MaskConstraint, PruneWithRewind, PruningMasks
from gim_zoo.callbacks.rifle import RIFLE, rifle_epochs
from gim_zoo.callbacks.teleport import SymmetryTeleport

__all__ = ["RIFLE", "MaskConstraint", "PruneWithRewind", "PruningMasks", "SymmetryTeleport",
           "rifle_epochs"]
