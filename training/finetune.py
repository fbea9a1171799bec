"""Fine-tune a zoo encoder on the handwritten digits (few labels), with or without RIFLE.

    python training/finetune.py --model=gim-fmnist-resnet --rifle_times=2 --seed=0
    python training/finetune.py --dropout=0.5            # the dropout baseline
    python training/finetune.py --dataset=folder/data/my_labelled --labels_per_class=20
    bash training/rifle_results.sh                        # the README's table and plot
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# experiments.flags first: it imports TensorFlow with its CUDA probing hushed
from experiments.flags import run_script  # noqa: E402
from experiments.rifle_finetuning import FinetuneConfig, finetune  # noqa: E402


def show(m):
    moved = ", ".join(f"{d:.3f}" for d in m["module_distance"])
    print(f"{m['model']} {m['variant']} seed {m['seed']}: digits test top-1 "
          f"{m['test_accuracy']:.4f} ({m['train_examples']} labels, {m['test_examples']} test "
          f"images); module distance from pre-trained: {moved}; {m['seconds']:.0f} s")


if __name__ == "__main__":
    run_script(FinetuneConfig, finetune, show)
