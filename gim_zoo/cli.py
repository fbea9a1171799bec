"""`python -m gim_zoo list | info NAME | export NAME --format F --out PATH | demo`."""

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile

NATIVE_LOGS_ENV = "GIM_ZOO_NATIVE_LOGS"  # =1: leave TensorFlow's C++ logging on stderr
# The Python-side stderr streams of finished native_logs_captured blocks, never closed: a
# logging handler created inside a block (TensorFlow's logger, at import) keeps the stream
# it was given, and must still reach the real stderr after the block.
_BLOCK_STDERRS = []


@contextlib.contextmanager
def native_logs_captured(expected_errors=()):
    """Send what C++ code writes to file descriptor 2 to a temporary file for the block.

    TensorFlow's native logging (CUDA probing on a CPU machine: "failed call to cuInit";
    the TFLite converter's MLIR passes) bypasses Python and partly TF_CPP_MIN_LOG_LEVEL.
    Python's own stderr (progress messages, warnings, tracebacks) is re-pointed at the
    real stderr, so only the native noise goes. If the block fails with anything but
    `expected_errors` (reported as one line by the caller), the captured log's tail is
    printed. No-op with GIM_ZOO_NATIVE_LOGS=1 or when stderr is no real file.
    """
    try:
        sys.stderr.flush()
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. captured by pytest
        fd = None
    if fd is None or os.environ.get(NATIVE_LOGS_ENV) == "1":
        yield
        return
    # TensorFlow's Python-side logging goes through absl's logger (std logging underneath)
    absl_logger = logging.getLogger("absl")
    absl_level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    saved_fd = os.dup(fd)
    python_stderr = sys.stderr
    sys.stderr = open(os.dup(saved_fd), "w", buffering=1, encoding=python_stderr.encoding,
                      errors="backslashreplace")
    log = tempfile.TemporaryFile()
    os.dup2(log.fileno(), fd)
    failed = False
    try:
        yield
    except BaseException as e:
        failed = not isinstance(e, (SystemExit, KeyboardInterrupt, *expected_errors))
        raise
    finally:
        absl_logger.setLevel(absl_level)
        sys.stderr.flush()
        os.dup2(saved_fd, fd)
        os.close(saved_fd)
        _BLOCK_STDERRS.append(sys.stderr)  # still the real stderr, for handlers made here
        sys.stderr = python_stderr
        if failed:
            log.seek(0)
            tail = log.read()[-4000:].decode(errors="replace").strip()
            if tail:
                print(f"TensorFlow's native log (last lines; {NATIVE_LOGS_ENV}=1 shows it "
                      f"all as it happens):\n{tail}", file=sys.stderr)
        log.close()


def _export(args):
    from gim_zoo.data.sources import source_from_string
    from gim_zoo.exporting import check_output, export_saved_model, export_tflite
    from gim_zoo.zoo import load
    from gim_zoo import registry

    check_output(args.out, args.overwrite, args.format == "saved_model")  # before loading
    weights = None if args.weights == "none" else args.weights
    spec = registry.get(args.name)
    encoder = load(args.name, weights=weights,
                   allow_other_architecture=args.allow_other_architecture)
    model = spec.modality.export_model(encoder, spec, args.module or None,
                                       saved_model=args.format == "saved_model",
                                       grid=args.grid, pool_to=args.pool_to)
    if args.format == "saved_model":
        path = export_saved_model(model, args.out, overwrite=args.overwrite)
    elif args.format == "tflite":
        path = export_tflite(model, args.out, overwrite=args.overwrite)
    else:
        calibration = spec.modality.calibration_inputs(
            spec, args.data_dir or None, encoder=encoder,
            source=source_from_string(args.dataset) if args.dataset else None)
        path = export_tflite(model, args.out, quantize="int8", overwrite=args.overwrite,
                             representative_images=calibration)
    print(f"wrote {path} ({args.format}; {model.input_shape} -> {model.output_shape})")


def _check_numbers(args):
    """Numeric flags, before any work (and before TensorFlow): --steps 0 or less would
    make the demo's fit run forever."""
    from gim_zoo.validation import check_int

    if args.command == "export":
        check_int("--module", args.module, low=0, note="0: the last")
        check_int("--pool_to", args.pool_to, low=0, note="0: the model's probe pooling")
    elif args.command == "demo":
        check_int("--labels_per_class", args.labels_per_class, low=0, note="0: all")
        check_int("--steps", args.steps, low=1)


def _demo(args):
    from gim_zoo.allocator import reuse_freed_memory

    reuse_freed_memory()  # before TensorFlow: the encoding passes run large batches
    from gim_zoo.demo import format_table, run_demo

    rows = run_demo(args.name, args.labels_per_class, args.out_dir, steps=args.steps,
                    log=lambda m: print(m, file=sys.stderr))
    budget = (f"{10 * args.labels_per_class:,} labelled images, {args.labels_per_class:,} "
              "per class" if args.labels_per_class else "all 60,000 labelled images")
    print(format_table(rows, f"{budget}; {args.steps:,} Adam steps on cached features"))


def main(argv=None):
    # Before anything imports TensorFlow: `list`, `info` and `--help` never do (they read
    # the registry and the package's JSON files), `export` and `demo` import it lazily.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="python -m gim_zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="registered model names")
    p.add_argument("pattern", nargs="?", default="*")
    p = sub.add_parser("info", help="spec, pinned files and metrics of a model")
    p.add_argument("name")
    p = sub.add_parser("export", help="export an encoder to SavedModel or TFLite")
    p.add_argument("name")
    p.add_argument("--format", choices=("saved_model", "tflite", "int8"), default="tflite")
    p.add_argument("--out", required=True, help="output path (.tflite file or a folder)")
    p.add_argument("--module", type=int, default=0, help="module whose features (0: last)")
    p.add_argument("--grid", action="store_true", help="export the (7, 7, C) grid, not pooled")
    p.add_argument("--pool_to", type=int, default=0,
                   help="pool the grid to k x k (1: global); 0: the model's probe pooling")
    p.add_argument("--weights", default="pretrained",
                   help="'pretrained', 'none' or a path to weights")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing export at --out (never another file or folder)")
    p.add_argument("--dataset", default="",
                   help="int8: the data whose training images calibrate the quantisation "
                        "(fashion_mnist, stl10, tfds/NAME, folder/PATH; resized to the "
                        "encoder's input); default the model's own")
    p.add_argument("--data_dir", default="", help="int8: the dataset's data dir (tfds or "
                   "Fashion-MNIST IDX files)")
    p.add_argument("--allow_other_architecture", action="store_true",
                   help="--weights=FOLDER of your own run of another size (other widths, "
                        "blocks...) under this name; the encoder class is always checked")
    p = sub.add_parser("demo", help="pretrained encoder -> probe -> TFLite -> table")
    p.add_argument("--name", default="gim-fmnist-resnet",
                   help="Fashion-MNIST zoo model whose bundled encoder is probed")
    p.add_argument("--labels_per_class", type=int, default=1000,
                   help="class-balanced label budget of the probe (default 1000: 10,000 "
                        "images, about 3 minutes on 2 idle cores; 0: all 60,000)")
    p.add_argument("--steps", type=int, default=3000,
                   help="Adam steps (batches of 256) of the softmax on the cached features")
    p.add_argument("--out_dir", default="runs/demo",
                   help="where the two .tflite files go")
    args = parser.parse_args(argv)

    # Light imports only: list / info must not import TensorFlow (tests/test_cli_startup.py).
    # DatasetNotFoundError and WeightsNotAvailableError are OSErrors, IntegrityError a
    # ValueError.
    from gim_zoo.catalog import info
    from gim_zoo.registry import UnknownModelError, list_models

    user_errors = (UnknownModelError, OSError, ValueError)  # OSError: one line naming the path
    try:
        _check_numbers(args)
        if args.command == "list":
            print("\n".join(list_models(args.pattern)))
        elif args.command == "info":
            print(json.dumps(info(args.name), indent=2))
        elif args.command == "export":
            with native_logs_captured(user_errors):
                _export(args)
        else:
            with native_logs_captured(user_errors):
                _demo(args)
    except user_errors as e:
        sys.exit(f"error: {e}")
