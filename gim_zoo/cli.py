"""`python -m gim_zoo list | info NAME | export NAME --format F --out PATH | demo`."""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _export(args):
    from gim_zoo.exporting import export_saved_model, export_tflite
    from gim_zoo.packaging import representative_inputs
    from gim_zoo.zoo import load
    from gim_zoo import registry

    weights = None if args.weights == "none" else args.weights
    spec = registry.get(args.name)
    encoder = load(args.name, weights=weights)
    if spec.is_audio:  # waveform crops in, per-frame features out; the GRU is unrolled
        model = (encoder.feature_model if args.format == "saved_model" else
                 encoder.export_model)(args.module or None)
    else:
        pool_to = None if args.grid else (args.pool_to or spec.probe_pool_to)
        model = encoder.feature_model(args.module or None, pool_to=pool_to)
    if args.format == "saved_model":
        path = export_saved_model(model, args.out)
    elif args.format == "tflite":
        path = export_tflite(model, args.out)
    else:
        path = export_tflite(model, args.out, quantize="int8",
                             representative_images=representative_inputs(spec))
    print(f"wrote {path} ({args.format}; {model.input_shape} -> {model.output_shape})")


def _demo(args):
    from gim_zoo.demo import format_table, run_demo

    rows = run_demo(args.name, args.labels_per_class, args.out_dir,
                    log=lambda m: print(m, file=sys.stderr))
    budget = f"{args.labels_per_class} labels per class" if args.labels_per_class \
        else "all 60,000 labels"
    print(format_table(rows, budget))


def main(argv=None):
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
    p = sub.add_parser("demo", help="pretrained encoder -> probe -> TFLite -> table")
    p.add_argument("--name", default="gim-fmnist-resnet")
    p.add_argument("--labels_per_class", type=int, default=0)
    p.add_argument("--out_dir", default="runs/demo")
    args = parser.parse_args(argv)

    from gim_zoo.data import DatasetNotFoundError
    from gim_zoo.hub import IntegrityError, WeightsNotAvailableError
    from gim_zoo.registry import UnknownModelError, list_models
    from gim_zoo.zoo import info

    try:
        if args.command == "list":
            print("\n".join(list_models(args.pattern)))
        elif args.command == "info":
            print(json.dumps(info(args.name), indent=2))
        elif args.command == "export":
            _export(args)
        else:
            _demo(args)
    except (UnknownModelError, WeightsNotAvailableError, IntegrityError, DatasetNotFoundError,
            FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
