"""Model cards (Hugging Face README.md with YAML front matter) generated from the registry
and a model's metrics.json: no number in a card is typed by hand."""

import json

HF_DATASETS = {"fashion_mnist": "zalando-datasets/fashion_mnist", "stl10": "tanganke/stl10"}
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "stl10": "STL-10"}
DATA_SOURCES = {"fashion_mnist": "the IDX files of Debian's dataset-fashion-mnist, the "
                                 "same files tensorflow-datasets downloads"}
BUDGET_NAMES = {"60": "1% labels (60/class)", "600": "10% labels (600/class)",
                "all": "100% labels"}


def _yaml_str(value):
    return json.dumps(str(value))  # a JSON string is a valid YAML scalar


def front_matter(spec, metrics):
    dataset = DATASET_NAMES[spec.dataset]
    lines = [
        "---",
        "library_name: keras",
        f"license: {spec.license}",
        "pipeline_tag: image-feature-extraction",
        "tags:",
        *[f"- {t}" for t in ("keras", "tensorflow", "tflite", "self-supervised",
                             "greedy-infomax", spec.objective, "gim_zoo")],
        "datasets:",
        f"- {HF_DATASETS[spec.dataset]}",
        "model-index:",
        f"- name: {spec.name}",
        "  results:",
    ]
    for budget, probe in sorted(metrics.get("linear_probe", {}).items()):
        lines += [
            "  - task:",
            "      type: image-classification",
            f"      name: {_yaml_str('Linear probe, ' + BUDGET_NAMES.get(budget, budget))}",
            "    dataset:",
            f"      name: {dataset}",
            f"      type: {HF_DATASETS[spec.dataset]}",
            "      split: test",
            "    metrics:",
            "    - type: accuracy",
            f"      value: {round(probe['test_accuracy'], 4)}",
            f"      name: {_yaml_str('top-1, frozen encoder, ' + BUDGET_NAMES.get(budget, budget))}",
        ]
    lines.append("---")
    return "\n".join(lines)


def render(spec, metrics):
    """The whole card: front matter, what the model is, how it was trained, its results."""
    dataset = DATASET_NAMES[spec.dataset]
    probes = metrics.get("linear_probe", {})
    table = ["| labels | linear-probe top-1 (test) |", "|---|---:|"]
    for budget, probe in sorted(probes.items()):
        table.append(f"| {BUDGET_NAMES.get(budget, budget)} | "
                     f"{100 * probe['test_accuracy']:.2f}% |")
    training = metrics.get("training", {})
    return "\n".join([
        front_matter(spec, metrics),
        "",
        f"# {spec.name}",
        "",
        spec.summary,
        "",
        f"Trained by gim_zoo's own command (below) on **real {dataset}** "
        f"({DATA_SOURCES.get(spec.dataset, 'tensorflow-datasets')}) on a 2-core CPU machine "
        "with no GPU and no network, for a few epochs: not the paper's STL-10 setup and "
        "not trained to convergence. Paper: " + spec.paper,
        "",
        "## Use",
        "",
        "```python",
        "import gim_zoo",
        f'encoder = gim_zoo.load("{spec.name}")          # raw 0..255 images (B, 28, 28, 1)',
        "grid = encoder(images)                           # (B, 7, 7, C) patch embeddings",
        "features = encoder.feature_model(module=3, pooled=True)(images)   # (B, C)",
        "```",
        "",
        "`encoder.tflite` (fp32) and `encoder_int8.tflite` map images to the pooled "
        "last-module features and run on LiteRT (`ai_edge_litert`).",
        "",
        "## Training",
        "",
        f"- command: `{training.get('command', spec.training_command())}`",
        f"- seed: {training.get('seed')}, epochs: {training.get('epochs')}, "
        f"wall time: {training.get('train_seconds')} s on 2 CPU cores",
        (f"- its own softmax head, test top-1: {100 * training['test_accuracy']:.2f}% "
         f"(cross-entropy {training.get('test_loss', 0):.4f})"
         if training.get("test_accuracy") is not None else
         f"- final test InfoNCE (sum over module losses): {training.get('test_loss', 0):.4f}"),
        *([f"- note: {training['note']}"] if training.get("note") else []),
        "",
        "## Linear-probe results",
        "",
        "Frozen encoder, global average pool of the last module, one softmax layer "
        "(`python training/probe.py --run_dir=RUN --labels_per_class=N`), "
        f"{dataset} test set (10,000 images).",
        "",
        *table,
        "",
        "## Files",
        "",
        "`config.json` (Keras-serialised encoder), `metadata.json` (versions, sha256 of "
        "every file), `model.weights.h5`, `metrics.json`, `encoder.tflite`, "
        "`encoder_int8.tflite`.",
        "",
    ])
