"""Lottery tickets (Frankle & Carbin, ICLR 2019): masks, pruning, rewinding, tickets.

- masks: PruningMasks (one {0, 1} mask per Dense / Conv kernel, kept by a MaskConstraint),
  magnitude (layerwise or global, by |w| or LAMP scores) and random pruning;
- callback: PruneWithRewind, the Keras callback that prunes and rewinds after each fit;
- networks: LeNet-300-100, Conv-2 and registered encoders by name (build_network);
- tickets: load_ticket and the layout of a ticket run written by training/lottery.py.
"""

from gim_zoo.lottery.callback import PruneWithRewind
from gim_zoo.lottery.masks import (GLOBAL_SCORES, LAYERWISE_RATES, MaskConstraint,
                                   PruningMasks, prunable_kernels)
from gim_zoo.lottery.networks import NETWORKS, build_network, conv2, lenet_300_100
from gim_zoo.lottery.tickets import completed_rounds, load_ticket, ticket_config

__all__ = ["GLOBAL_SCORES", "LAYERWISE_RATES", "NETWORKS", "MaskConstraint", "PruneWithRewind",
           "PruningMasks", "build_network", "completed_rounds", "conv2", "lenet_300_100",
           "load_ticket", "prunable_kernels", "ticket_config"]
