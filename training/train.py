r"""Train a zoo model (Greedy InfoMax, end-to-end CPC or supervised) into a run directory.

    python training/train.py --model=gim-fmnist-resnet --epochs=2 --out_dir=runs/x
    python training/train.py --model=gim-fmnist-resnet --dataset=folder/data/my_images \
        --image_size=32 --channels=3 --out_dir=runs/mine     # your own images
    python training/train.py --model=gim-stl10-resnet --dataset=stl10 --out_dir=runs/stl10
    python training/train.py --model=gim-fmnist-resnet --dataset=tfds/cifar10 \
        --image_size=32 --channels=3 --out_dir=runs/c10

--dataset: fashion_mnist, stl10 (built-ins), tfds/NAME[:CONFIG] (a tensorflow-datasets
image dataset) or folder/PATH (class subfolders = labels, a flat folder = unlabelled;
PATH/train and PATH/test = the splits); docs/own-images.md.
Re-running the same command resumes from the last completed epoch.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gim_zoo.allocator import reuse_freed_memory  # noqa: E402

reuse_freed_memory()  # before TensorFlow starts its threads (docs/training.md)

from experiments.flags import run_script  # noqa: E402
from experiments.pretraining import TrainConfig, train  # noqa: E402

if __name__ == "__main__":
    run_script(TrainConfig, train, lambda m: print(json.dumps(m, indent=2, sort_keys=True)))
