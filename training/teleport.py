"""Train an MLP (or a GIM module) on Fashion-MNIST with or without symmetry teleportation.

    python training/teleport.py --optimizer=sgd --teleport --seed=0
    python training/teleport.py --optimizer=sgd --noteleport --seed=0     # the baseline
    python training/teleport.py --model=convnet --group=rescale --objective=sharpness_min \
        --epochs=20 --at_steps=0:3140:157 --seed=0     # teleport to flatter points
    bash training/teleport_results.sh                                     # the README table
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gim_zoo.allocator import reuse_freed_memory  # noqa: E402

reuse_freed_memory()  # before TensorFlow starts its threads (docs/training.md)

from experiments.flags import run_script  # noqa: E402
from experiments.teleport_comparison import TeleportConfig, run_teleport_experiment  # noqa: E402


def show(m):
    target = m["steps_to_target"]
    reached = f"step {target}" if target is not None else "never"
    accuracy = f", test top-1 {m['test_accuracy']:.4f}" if "test_accuracy" in m else ""
    if "final_sharpness" in m:
        accuracy += (f", final sharpness {m['final_sharpness']:.4g} (adaptive "
                     f"{m.get('final_adaptive_sharpness', float('nan')):.4g})")
    gains = ", ".join(f"{r['before']:.3g}->{r['after']:.3g}" for r in m["teleports"])
    objective = m["teleports"][0]["objective"] if m["teleports"] else ""
    objective = "grad norm^2" if objective == "grad_norm" else objective
    print(f"{m['model']} {m['optimizer']} teleport={m['teleport']} seed {m['seed']}: training "
          f"loss <= {m['target_loss']} at {reached}; final {m['final_subset_loss']:.4f}"
          f"{accuracy}; {m['seconds']:.0f} s" + (f"; {objective} {gains}" if gains else ""))


if __name__ == "__main__":
    run_script(TeleportConfig, run_teleport_experiment, show)
