"""Keras callbacks: lottery-ticket pruning with rewind, RIFLE, symmetry teleportation.

The lottery and teleportation callbacks live with the rest of their feature
(gim_zoo.lottery, gim_zoo.teleport); they are importable from here as well.
"""

from gim_zoo.callbacks.backup import BackupError, ResumableBackup
from gim_zoo.callbacks.rifle import RIFLE, CyclicCosineDecay, HeadRateSGD, rifle_epochs
from gim_zoo.lottery import MaskConstraint, PruneWithRewind, PruningMasks
from gim_zoo.teleport import SymmetryTeleport

__all__ = ["BackupError", "CyclicCosineDecay", "HeadRateSGD", "ResumableBackup",
           "RIFLE", "MaskConstraint", "PruneWithRewind", "PruningMasks", "SymmetryTeleport",
           "rifle_epochs"]
