"""The experiments behind the zoo: drivers, reports, plots and flag plumbing.

The scripts next to this package (`training/train.py`, `probe.py`, ...) are thin absl
entry points into these modules; the modules import each other relatively, so the
package is `experiments` to the scripts (their own folder is on the path) and
`training.experiments` to the tests. `gim_zoo` (the library) never imports from here.

Importing it does nothing else: the scripts that train or encode set the process's
malloc (`gim_zoo.allocator.reuse_freed_memory`) themselves, first thing.
"""
