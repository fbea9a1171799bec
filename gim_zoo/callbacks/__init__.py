"""Keras callbacks: lottery-ticket pruning with rewind (more to come: RIFLE, teleportation)."""

from gim_zoo.callbacks.lottery import MaskConstraint, PruneWithRewind, PruningMasks

__all__ = ["MaskConstraint", "PruneWithRewind", "PruningMasks"]
