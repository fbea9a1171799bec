"""Model cards (Hugging Face README.md with YAML front matter) generated from the registry
and a model's metrics.json: no number in a card is typed by hand."""

import json

from gim_zoo.data.sources import source_from_string

BUDGET_NAMES = {"60": "1% labels (60/class)", "600": "10% labels (600/class)",
                "all": "100% labels"}


def _budget_name(budget):
    return BUDGET_NAMES.get(budget, f"{budget} labels/class")


def _yaml_str(value):
    return json.dumps(str(value))  # a JSON string is a valid YAML scalar


def data_source(spec, metrics):
    """The source the packaged run trained on (metrics.json's training.dataset; older
    metrics: the model's registered source)."""
    return source_from_string(metrics.get("training", {}).get("dataset") or spec.dataset)


def probed_source(spec, metrics):
    """The source the linear probes were fitted and scored on (metrics.json's
    linear_probe_dataset; by default the training source)."""
    named = metrics.get("linear_probe_dataset")
    return source_from_string(named) if named else data_source(spec, metrics)


def _input_shape(spec, metrics):
    shape = metrics.get("training", {}).get("input_shape")
    if shape:
        return tuple(shape)
    return (spec.encoder["image_size"], spec.encoder["image_size"], spec.encoder["channels"])


def front_matter(spec, metrics):
    source = probed_source(spec, metrics)
    dataset = source.title
    dataset_type = source.hf_dataset or source.name
    lines = [
        "---",
        "library_name: keras",
        f"license: {spec.license}",
        "pipeline_tag: image-feature-extraction",
        "tags:",
        *[f"- {t}" for t in ("keras", "tensorflow", "tflite", "self-supervised",
                             "greedy-infomax", spec.objective, "gim_zoo",
                             *(["lottery-ticket", "sparse"] if spec.ticket_of else []))],
        *(["datasets:", f"- {source.hf_dataset}"] if source.hf_dataset else []),
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
            f"      name: {_yaml_str(dataset) if ':' in dataset else dataset}",
            f"      type: {_yaml_str(dataset_type) if ':' in dataset_type else dataset_type}",
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
    if training.get("jobs"):  # module at a time: each module's loss after its own job
        losses = {k: v for job in training["jobs"]
                  for k, v in job.get("test_module_losses", {}).items()}
        if losses:
            return "- final test InfoNCE of each module, after its job: " + ", ".join(
                f"{k.removeprefix('test_').removesuffix('_loss').replace('module', 'module ')}"
                f" {v:.4f}" for k, v in sorted(losses.items()))
    if training.get("test_loss") is not None:
        return f"- final test InfoNCE (sum over module losses): {training['test_loss']:.4f}"
    return "- trained without labels; scored by the linear probe below"


def _accuracy(probe):
    """'88.80%', or with several probe seeds 'mean% ± std (n probe seeds)'."""
    if "test_accuracy_std" in probe:
        return (f"{100 * probe['test_accuracy']:.2f}% ± {100 * probe['test_accuracy_std']:.2f}"
                f" ({len(probe['test_accuracies'])} probe seeds)")
    return f"{100 * probe['test_accuracy']:.2f}%"


def _test_images(probes):
    counts = {p.get("test_examples", 10000) for p in probes.values()}
    return "/".join(f"{c:,}" for c in sorted(counts))


def _ticket_section(ticket):
    # the pruning and rewinding rules, as the ticket records them (older ones record none)
    rules = "; ".join(ticket[key] for key in ("pruning", "rewinding") if ticket.get(key))
    return [
        "## Lottery ticket",
        "",
        f"Iterative magnitude pruning of `{ticket['ticket_of']}`'s encoder, round "
        f"{ticket['round']}{f' ({rules})' if rules else ''}: "
        f"**{100 * ticket['weights_remaining']:.1f}% of the prunable "
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


def _jobs_lines(jobs):
    """A module-at-a-time recipe: one line per job (each a resumable command)."""
    return ["- trained one job at a time, each starting from the previous job's weights:",
            *[f"  {i}. `{job['command']}` ({job['epochs']} epochs, {job['train_seconds']} s)"
              for i, job in enumerate(jobs, 1)]]


def _training_section(spec, training, ticket=None):
    return [
        "## Training",
        "",
        *(_jobs_lines(training["jobs"]) if training.get("jobs") else
          [f"- command: `{training.get('command', spec.training_command())}`"]),
        f"- seed: {training.get('seed')}, epochs{' per round' if ticket else ''}"
        f"{' (last job)' if training.get('jobs') else ''}: "
        f"{training.get('epochs')}, wall time{' of the round' if ticket else ''}"
        f"{' (all jobs)' if training.get('jobs') else ''}: "
        f"{training.get('train_seconds')} s on 2 CPU cores",
        _score_line(training),
        *([f"- note: {training['note']}"] if training.get("note") else []),
        "",
    ]


FILES_SECTION = [
    "## Files",
    "",
    "`config.json` (Keras-serialised encoder), `metadata.json` (versions, sha256 of every "
    "file), `model.weights.h5`, `metrics.json`, `encoder.tflite`, `encoder_int8.tflite`.",
    "",
]
def audio_front_matter(spec, metrics):
    lines = [
        "---",
        "library_name: keras",
        f"license: {spec.license}",
        "pipeline_tag: feature-extraction",
        "tags:",
        *[f"- {t}" for t in ("keras", "tensorflow", "tflite", "audio", "speech",
                             "synthetic-data", "greedy-infomax", spec.objective, "gim_zoo")],
        "model-index:",
        f"- name: {spec.name}",
        "  results:",
    ]
    source = data_source(spec, metrics)
    probes = metrics.get("linear_probe", {})
    probe = max(probes.values(), key=lambda p: p["module"]) if probes else None
    for task, key in (("Phone classification per 10 ms frame", "phone_accuracy"),
                      ("Speaker classification per utterance", "speaker_accuracy")):
        if not probe:
            break
        where = f"module {probe['module']}"
        lines += [
            "  - task:",
            "      type: audio-classification",
            f"      name: {_yaml_str(f'{task}, linear probe on {where}')}",
            "    dataset:",
            f"      name: {_yaml_str(source.title)}",
            f"      type: {source.name}",
            "      split: test",
            "    metrics:",
            "    - type: accuracy",
            f"      value: {round(probe[key], 4)}",
            f"      name: {_yaml_str('top-1, frozen encoder, ' + where)}",
        ]
    lines.append("---")
    return "\n".join(lines)


def render_audio(spec, metrics):
    """The card of an audio encoder: phone and speaker probes per module. A synthetic
    corpus is said at the top, since its numbers are not LibriSpeech's."""
    probes = metrics.get("linear_probe", {})
    baseline = metrics.get("random_init_linear_probe", {})
    table = ["| features | phone top-1 (per frame) | speaker top-1 (per utterance) |",
             "|---|---:|---:|"]
    for source, results in ((spec.name, probes), ("random-init encoder", baseline)):
        for probe in sorted(results.values(), key=lambda p: p["module"]):
            table.append(f"| {source}, module {probe['module']} | "
                         f"{100 * probe['phone_accuracy']:.1f}% | "
                         f"{100 * probe['speaker_accuracy']:.1f}% |")
    some = next(iter(probes.values()), {})
    source = data_source(spec, metrics)
    samples = spec.encoder["crop_samples"]
    frames = samples // 160
    return "\n".join([
        audio_front_matter(spec, metrics),
        "",
        f"# {spec.name}",
        "",
        spec.summary,
        "",
        "Trained by gim_zoo's own command (below) on " + source.provenance
        + " Paper: " + spec.paper,
        "",
        "## Use",
        "",
        "```python",
        "import gim_zoo",
        f'encoder = gim_zoo.load("{spec.name}")   # 16 kHz waveforms (B, samples) in [-1, 1]',
        "frames = encoder(waveforms)              # (B, samples // 160, C): one vector per 10 ms",
        "conv5 = encoder.feature_model(module=5)(waveforms)   # any module's frames",
        "```",
        "",
        f"`encoder.tflite` (fp32) and `encoder_int8.tflite` map one {samples:,}-sample crop "
        f"(1, {samples}) to the GRU's per-frame features (1, {frames}, "
        f"{spec.encoder['gru_units']}); the GRU is unrolled over the {frames} frames so the "
        "file uses TFLite builtin ops only and runs on LiteRT (`ai_edge_litert`).",
        "",
        *_training_section(spec, metrics.get("training", {})),
        *([
            f"## Linear-probe results ({source.short_title})",
            "",
            "Frozen encoder; first 1.28 s of every utterance; softmax regression from each "
            "10 ms frame's features to its phone, and from the frames' mean to the speaker "
            f"(`{metrics.get('probe_command', 'python training/probe_audio.py')}`); test "
            "split = every speaker's last fifth of sentences "
            f"({some.get('phone_frames_test', '?'):,} frames, "
            f"{some.get('utterances_test', '?')} utterances).",
            "",
            *table,
            "",
        ] if probes else []),
        *FILES_SECTION,
    ])


def render(spec, metrics):
    """The whole card: front matter, what the model is, how it was trained, its results."""
    return {"image": render_images, "audio": render_audio}[spec.modality.name](spec, metrics)


def render_images(spec, metrics):
    """The card of an image model."""
    source = data_source(spec, metrics)
    dataset = source.title
    probed = probed_source(spec, metrics).title
    size, _, channels = _input_shape(spec, metrics)
    probes = metrics.get("linear_probe", {})
    baseline = metrics.get("random_init_linear_probe", {})
    table = ["| labels | linear-probe top-1 (test) |"
             + (" random-init encoder, same probe |" if baseline else ""),
             "|---|---:|" + ("---:|" if baseline else "")]
    for budget, probe in sorted(probes.items()):
        table.append(f"| {_budget_name(budget)} | {_accuracy(probe)} |"
                     + (f" {_accuracy(baseline[budget])} |"
                        if budget in baseline else (" - |" if baseline else "")))
    global_pool = metrics.get("global_pool_linear_probe", {})
    global_baseline = metrics.get("random_init_global_pool_linear_probe", {})
    if global_pool:
        table += ["", "The paper's probe input, the grid averaged to one vector:", "",
                  "| labels | linear-probe top-1 (test), global average pool |"
                  + (" random-init encoder, same probe |" if global_baseline else ""),
                  "|---|---:|" + ("---:|" if global_baseline else ""),
                  *[f"| {_budget_name(b)} | {_accuracy(p)} |"
                    + (f" {_accuracy(global_baseline[b])} |" if b in global_baseline
                       else (" - |" if global_baseline else ""))
                    for b, p in sorted(global_pool.items())]]
    training = metrics.get("training", {})
    ticket = metrics.get("ticket")
    return "\n".join([
        front_matter(spec, metrics),
        "",
        f"# {spec.name}",
        "",
        spec.summary,
        "",
        "Trained by gim_zoo's own command (below) on "
        + (f"**real {dataset}** ({source.provenance})" if source.hf_dataset else
           f"**{dataset}**")
        + " on a 2-core CPU machine with no GPU and no network, for a few epochs: not the "
        "paper's STL-10 setup and not trained to convergence. Paper: " + spec.paper,
        "",
        "## Use",
        "",
        "```python",
        "import gim_zoo",
        f'encoder = gim_zoo.load("{spec.name}")          # raw 0..255 images '
        f'(B, {size}, {size}, {channels})',
        "grid = encoder(images)                           # (B, 7, 7, C) patch embeddings",
        f"features = encoder.feature_model(module=3, pool_to={spec.probe_pool_to})(images)"
        f"   # (B, {spec.probe_pool_to ** 2} * C)",
        "```",
        "",
        "`encoder.tflite` (fp32) and `encoder_int8.tflite` map images to the last module's "
        f"rectified features pooled to {_grid(spec)} (what the linear probe reads) and run "
        "on LiteRT (`ai_edge_litert`).",
        "",
        *_training_section(spec, training, ticket),
        *(_ticket_section(ticket) if ticket else []),
        *([
            "## Linear-probe results",
            "",
            "Frozen encoder, last module's patch grid rectified and average-pooled to "
            f"{_grid(spec)}, one softmax layer ("
            + ("fitted by `training/lottery.py` after the round"
               if ticket else "`python training/probe.py --run_dir=RUN --labels_per_class=N`")
            + f"), {probed} test set ({_test_images(probes)} images).",
            "",
            *table,
            "",
        ] if probes else []),
        *FILES_SECTION,
    ])
