"""Fine-tune a zoo encoder on a few-label target (the digits, or Fashion-MNIST with a
fraction of its labels), with or without RIFLE.

    python training/finetune.py --model=gim-fmnist-resnet --rifle_times=2 --seed=0
    python training/finetune.py --dropout=0.5            # the dropout baseline
    python training/finetune.py --dataset=folder/data/my_labelled --labels_per_class=20
    bash training/rifle_results.sh                        # the digits table (Adam)
    python training/finetune.py --target=fashion_mnist --labels_per_class=600 \
        --optimizer=sgd --learning_rate=0.01 --weight_decay=1e-4 --batch_size=32 \
        --epochs=40 --quiet_epochs=5 --rifle_times=3 --resumable   # the authors' regime
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gim_zoo.allocator import reuse_freed_memory  # noqa: E402

reuse_freed_memory()  # before TensorFlow starts its threads (docs/training.md)

# experiments.flags first: it imports TensorFlow with its CUDA probing hushed
from experiments.flags import run_script  # noqa: E402
from experiments.rifle_finetuning import FinetuneConfig, finetune  # noqa: E402


def show(m):
    moved = ", ".join(f"{d:.3f}" for d in m["module_distance"])
    print(f"{m['model']} {m['variant']} seed {m['seed']}: {m.get('target', 'digits')} test top-1 "
          f"{m['test_accuracy']:.4f} ({m['train_examples']} labels, {m['test_examples']} test "
          f"images); module distance from pre-trained: {moved}; {m['seconds']:.0f} s")


if __name__ == "__main__":
    run_script(FinetuneConfig, finetune, show)
