"""Package a finished training run as a zoo model folder (bundled copy + card + pins).

    python export/package.py --model=gim-fmnist-resnet --run_dir=runs/gim-fmnist-resnet-seed0

Writes gim_zoo/pretrained/NAME/ (config.json, metadata.json, model.weights.h5, README.md,
metrics.json, encoder.tflite, encoder_int8.tflite), model_cards/NAME.md, and pins every
file's sha256 in gim_zoo/pretrained/manifest.json.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from gim_zoo.flags import USER_ERRORS  # noqa: E402
from gim_zoo.packaging import package_run  # noqa: E402

flags.DEFINE_string("model", None, "registry name", required=True)
flags.DEFINE_string("run_dir", None, "finished run directory", required=True)
flags.DEFINE_string("out_dir", "", "folder to write (default: the package's bundled copy)")
flags.DEFINE_string("data_dir", "", "dataset folder (representative images for int8)")
flags.DEFINE_string("note", "", "a remark recorded with the metrics and shown in the card")

CARDS_DIR = Path(__file__).resolve().parents[1] / "model_cards"


def main(argv):
    f = flags.FLAGS
    try:
        folder = package_run(f.model, f.run_dir, f.out_dir or None, CARDS_DIR, f.data_dir or None,
                             f.note)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    print(f"wrote {folder}; card in {CARDS_DIR / (f.model + '.md')}")


if __name__ == "__main__":
    app.run(main)
