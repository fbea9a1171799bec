"""Export a zoo encoder: SavedModel, TFLite fp32 or TFLite int8.

    python export/export.py gim-fmnist-resnet --format tflite --out encoder.tflite
    python export/export.py gim-fmnist-resnet --format saved_model --out encoder_savedmodel

Same as `python -m gim_zoo export ...`.
"""

import sys

from gim_zoo.cli import main

if __name__ == "__main__":
    main(["export", *sys.argv[1:]])
