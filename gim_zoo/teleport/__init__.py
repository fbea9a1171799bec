"""Symmetry teleportation (Zhao, Gower, Walters, Yu, ICLR 2024).

- symmetries: loss-preserving group actions on layer pairs (ChannelRescaling,
  DataDependentGL) and the pair finders (rescalable_pairs, gl_links, gl_pairs);
- search: Teleporter, the orbit search for a better objective on one batch;
- callback: SymmetryTeleport, the Keras callback that teleports at planned steps of fit.
"""

from gim_zoo.teleport.callback import OPTIMIZER_STATES, SymmetryTeleport
from gim_zoo.teleport.search import OBJECTIVES, Teleporter, default_loss
from gim_zoo.teleport.symmetries import (GROUPS, ChannelRescaling, DataDependentGL,
                                         actions_for, gl_links, gl_pairs, rescalable_pairs)

__all__ = ["GROUPS", "OBJECTIVES", "OPTIMIZER_STATES", "ChannelRescaling", "DataDependentGL",
           "SymmetryTeleport", "Teleporter", "actions_for", "default_loss", "gl_links",
           "gl_pairs", "rescalable_pairs"]
