"""Package a finished training run as a zoo model folder (bundled copy + card + pins).

    python training/package.py --model=gim-fmnist-resnet --run_dir=runs/gim-fmnist-resnet-seed0
    python training/package.py --model=gim-fmnist-resnet-ticket --ticket_dir=runs/lth/gim-ticket-seed0

Writes gim_zoo/pretrained/NAME/ (config.json, metadata.json, model.weights.h5, README.md,
metrics.json, encoder.tflite, encoder_int8.tflite), model_cards/NAME.md, and pins every
file's sha256 in gim_zoo/pretrained/manifest.json. With --out_dir=X only X is written
(its card is X/README.md; the package's bundled copies, cards and manifest are untouched);
X must be new or empty, or (with --overwrite) a model folder package.py wrote before.

Packaging reads run directories, so it is an experiment step and lives here, beside
train.py (export/ holds what needs only the library: export.py, publish.py).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gim_zoo.allocator import reuse_freed_memory  # noqa: E402

reuse_freed_memory()  # before TensorFlow starts its threads (docs/training.md)

from absl import flags  # noqa: E402

from experiments.flags import USER_ERRORS, run_main  # noqa: E402
from experiments.packaging import package_run, package_ticket  # noqa: E402
from gim_zoo.cli import native_logs_captured  # noqa: E402

flags.DEFINE_string("model", None, "registry name", required=True)
flags.DEFINE_string("run_dir", "", "finished train.py run directory")
flags.DEFINE_string("ticket_dir", "", "lottery-ticket models: the training/lottery.py run")
flags.DEFINE_integer("round", -1, "lottery-ticket models: the round to package (-1: the "
                     "sparsest within a point of the dense round)")
flags.DEFINE_string("out_dir", "", "folder to write (default: the package's bundled copy): a "
                    "new or empty folder, never the run directory, a folder inside it or "
                    "one holding it")
flags.DEFINE_bool("overwrite", False, "replace --out_dir if it holds a model folder written "
                  "before (only then: a folder holding anything else is never replaced)")
flags.DEFINE_string("data_dir", "", "dataset folder (representative images for int8)")
flags.DEFINE_string("random_init_probes", "", "probes folder of the random-init baseline "
                    "(probe.py --random_init), recorded next to the model's probe scores")
flags.DEFINE_string("note", "", "a remark recorded with the metrics and shown in the card")

CARDS_DIR = Path(__file__).resolve().parents[1] / "model_cards"


def main(argv):
    f = flags.FLAGS
    cards_dir = None if f.out_dir else CARDS_DIR  # --out_dir: write nothing else
    try:
        with native_logs_captured(USER_ERRORS):  # the TFLite converter's C++ chatter
            if f.ticket_dir:
                folder = package_ticket(f.model, f.ticket_dir,
                                        None if f.round < 0 else f.round, f.out_dir or None,
                                        cards_dir, f.data_dir or None, f.note,
                                        overwrite=f.overwrite)
            elif f.run_dir:
                folder = package_run(f.model, f.run_dir, f.out_dir or None, cards_dir,
                                     f.data_dir or None, f.note, f.random_init_probes or None,
                                     overwrite=f.overwrite)
            else:
                raise ValueError("give --run_dir (a train.py run) or --ticket_dir (a lottery "
                                 "run)")
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    print(f"wrote {folder}; card in "
          f"{(cards_dir or folder) / (f.model + '.md' if cards_dir else 'README.md')}")


if __name__ == "__main__":
    run_main(main)
