"""Model cards (Hugging Face README.md with YAML front matter) generated from the registry
and a model's metrics.json: no number in a card is typed by hand."""

import json

HF_DATASETS = {"fashion_mnist": "zalando-datasets/fashion_mnist", "stl10": "tanganke/stl10"}
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "stl10": "STL-10"}
DATA_SOURCES = {"fashion_mnist": "the IDX files of Debian's dataset-fashion-mnist, the "
                                 "same files tensorflow-datasets downloads"}
BUDGET_NAMES = {"60": "1% labels (60/class)", "600": "10% labels (600/class)",
                "all": "100% labels"}


def _budget_name(budget):
    return BUDGET_NAMES.get(budget, f"{budget} labels/class")


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
                             "greedy-infomax", spec.objective, "gim_zoo",
                             *(["lottery-ticket", "sparse"] if spec.ticket_of else []))],
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
            f"      name: {_yaml_str('Linear probe, ' + _budget_name(budget))}",
            "    dataset:",
            f"      name: {dataset}",
            f"      type: {HF_DATASETS[spec.dataset]}",
            "      split: test",
            "    metrics:",
            "    - type: accuracy",
            f"      value: {round(probe['test_accuracy'], 4)}",
            f"      name: {_yaml_str('top-1, frozen encoder, ' + _budget_name(budget))}",
        ]
    lines.append("---")
    return "\n".join(lines)


def _score_line(training):
    """How the training run itself scored: its own head's accuracy, or its InfoNCE."""
    if training.get("test_accuracy") is not None:
        loss = training.get("test_loss")
        return (f"- its own softmax head, test top-1: {100 * training['test_accuracy']:.2f}%"
                + (f" (cross-entropy {loss:.4f})" if loss is not None else ""))
    if training.get("test_loss") is not None:
        return f"- final test InfoNCE (sum over module losses): {training['test_loss']:.4f}"
    return "- trained without labels; scored by the linear probe below"


def _test_images(probes):
    counts = {p.get("test_examples", 10000) for p in probes.values()}
    return "/".join(f"{c:,}" for c in sorted(counts))


def _ticket_section(ticket):
    return [
        "## Lottery ticket",
        "",
        f"Iterative magnitude pruning of `{ticket['ticket_of']}`'s encoder, round "
        f"{ticket['round']}: **{100 * ticket['weights_remaining']:.1f}% of the prunable "
        "weights remain** (pruned ones are exactly zero in `model.weights.h5`; "
        "`encoder.tflite` stores them in TFLite's sparse format). Test score "
        f"{100 * ticket['ticket_test_accuracy']:.2f}% vs "
        f"{100 * ticket['dense_test_accuracy']:.2f}% "
        "for the dense network of round 0 trained the same way (every round: "
        f"{ticket.get('epochs_per_round')} epoch(s) on the first "
        f"{ticket.get('train_examples'):,} training images). Every round's numbers are in "
        "`metrics.json`.",
        "",
    ]


def _grid(spec):
    k = spec.probe_pool_to
    return "one vector (global average, as the paper)" if k == 1 else f"a {k}x{k} grid"


def render(spec, metrics):
    """The whole card: front matter, what the model is, how it was trained, its results."""
    dataset = DATASET_NAMES[spec.dataset]
    probes = metrics.get("linear_probe", {})
    baseline = metrics.get("random_init_linear_probe", {})
    table = ["| labels | linear-probe top-1 (test) |"
             + (" random-init encoder, same probe |" if baseline else ""),
             "|---|---:|" + ("---:|" if baseline else "")]
    for budget, probe in sorted(probes.items()):
        table.append(f"| {_budget_name(budget)} | "
                     f"{100 * probe['test_accuracy']:.2f}% |"
                     + (f" {100 * baseline[budget]['test_accuracy']:.2f}% |"
                        if budget in baseline else (" - |" if baseline else "")))
    training = metrics.get("training", {})
    ticket = metrics.get("ticket")
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
        f"features = encoder.feature_model(module=3, pool_to={spec.probe_pool_to})(images)"
        f"   # (B, {spec.probe_pool_to ** 2} * C)",
        "```",
        "",
        "`encoder.tflite` (fp32) and `encoder_int8.tflite` map images to the last module's "
        f"rectified features pooled to {_grid(spec)} (what the linear probe reads) and run "
        "on LiteRT (`ai_edge_litert`).",
        "",
        "## Training",
        "",
        f"- command: `{training.get('command', spec.training_command())}`",
        f"- seed: {training.get('seed')}, epochs{' per round' if ticket else ''}: "
        f"{training.get('epochs')}, wall time{' of the round' if ticket else ''}: "
        f"{training.get('train_seconds')} s on 2 CPU cores",
        _score_line(training),
        *([f"- note: {training['note']}"] if training.get("note") else []),
        "",
        *(_ticket_section(ticket) if ticket else []),
        *([
            "## Linear-probe results",
            "",
            "Frozen encoder, last module's patch grid rectified and average-pooled to "
            f"{_grid(spec)}, one softmax layer ("
            + ("fitted by `training/lottery.py` after the round"
               if ticket else "`python training/probe.py --run_dir=RUN --labels_per_class=N`")
            + f"), {dataset} test set ({_test_images(probes)} images).",
            "",
            *table,
            "",
        ] if probes else []),
        "## Files",
        "",
        "`config.json` (Keras-serialised encoder), `metadata.json` (versions, sha256 of "
        "every file), `model.weights.h5`, `metrics.json`, `encoder.tflite`, "
        "`encoder_int8.tflite`.",
        "",
    ])
