"""Run a script with tensorflow-datasets mocked (no download, no prepared data): every
tfds dataset yields NUM_EXAMPLES random examples shaped like its features.

    python tests/mock_tfds.py NUM_EXAMPLES SCRIPT [ARGS...]

What the CI chains use to run the real commands (train.py, probe.py, package.py,
`python -m gim_zoo export`) on STL-10 or CIFAR-10 without the data
(tensorflow_datasets.testing.mock_data, MockPolicy.USE_CODE: the features come from the
dataset's code, so no metadata files are needed).
"""

import os
import runpy
import sys


def main():
    count, script, *args = sys.argv[1:]
    import tensorflow_datasets as tfds

    sys.argv = [script, *args]
    if script == "-m":  # python -m MODULE ...
        module, *args = args
        sys.argv = [module, *args]
        run = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)  # noqa
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        run = lambda: runpy.run_path(script, run_name="__main__")  # noqa
    with tfds.testing.mock_data(num_examples=int(count),
                                policy=tfds.testing.MockPolicy.USE_CODE):
        run()


if __name__ == "__main__":
    main()
