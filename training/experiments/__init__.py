"""The experiments behind the zoo: drivers, reports, plots and flag plumbing.

The scripts next to this package (`training/train.py`, `probe.py`, ...) are thin absl
entry points into these modules. `gim_zoo` (the library) never imports from here.
"""
