"""The experiments behind the zoo: drivers, reports, plots and flag plumbing.

The scripts next to this package (`training/train.py`, `probe.py`, ...) are thin absl
entry points into these modules. `gim_zoo` (the library) never imports from here.

Importing the package sets the process's malloc to reuse freed memory
(`gim_zoo.allocator`), before TensorFlow is imported: every driver trains or encodes
large batches, whose per-step tensors otherwise cost page faults that grow with the batch.
"""

from gim_zoo.allocator import reuse_freed_memory

reuse_freed_memory()
