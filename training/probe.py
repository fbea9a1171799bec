r"""Linear probe on a frozen encoder: test top-1 for a label budget.

    python training/probe.py --run_dir=runs/x --labels_per_class=60,600,0
    python training/probe.py --random_init --model=gim-fmnist-resnet --labels_per_class=60
    python training/probe.py --run_dir=runs/mine --dataset=folder/data/my_labelled \
        --labels_per_class=10,0       # a run trained on unlabelled images, probed on labelled
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gim_zoo.allocator import reuse_freed_memory  # noqa: E402

reuse_freed_memory()  # before TensorFlow starts its threads (docs/training.md)

from experiments.flags import run_script  # noqa: E402
from experiments.image_probes import ProbeConfig, probe  # noqa: E402


def show(results):
    for r in results:
        print(f"{r['model']} ({r['source']}), module {r['module']}, pooled to "
              f"{r['pool_to']}x{r['pool_to']}, {r['train_examples']} labels: test top-1 "
              f"{r['test_accuracy']:.4f} on {r['test_examples']} images  [{r['path']}]"
              + ("  (already probed with these weights and settings; --redo fits again)"
                 if r.get("reused") else ""))


if __name__ == "__main__":
    run_script(ProbeConfig, probe, show)
