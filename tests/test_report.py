"""Report tables and plot come from the JSON files train.py / probe.py write."""

import json

from training.experiments import reports


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_tables_and_plot_from_run_directories(tmp_path):
    gim = tmp_path / "gim-fmnist-resnet-seed0"
    write(gim / "metrics.json", {"epochs_completed": 8, "train_seconds": 10.0,
                                 "train_examples": 60000, "test_loss": 3.25})
    for budget, acc in (("60", 0.71), ("all", 0.875)):
        write(gim / "probes" / f"labels{budget}-module3-pool3-seed0.json",
              {"labels_per_class": budget, "module": 3, "pool_to": 3, "seed": 0,
               "test_accuracy": acc})
    write(gim / "probes" / "labelsall-module1-pool3-seed0.json",
          {"labels_per_class": "all", "module": 1, "pool_to": 3, "seed": 0,
           "test_accuracy": 0.8})
    write(gim / "probes" / "labelsall-module3-seed0.json",  # older file: global pool
          {"labels_per_class": "all", "module": 3, "seed": 0, "test_accuracy": 0.5})
    write(tmp_path / "supervised-fmnist-resnet-labels60-seed0" / "metrics.json",
          {"test_accuracy": 0.65, "epochs_completed": 100})
    rows, per_module = reports.collect(tmp_path)
    table = reports.markdown(rows, per_module)
    assert "| GIM (Greedy InfoMax) | 71.0 | - | 87.5 |" in table
    assert "| Supervised end-to-end (trained on the budget, global-pool head) | 65.0 | - | - |" \
        in table
    assert "| GIM (Greedy InfoMax) | 80.0 | - | 87.5 |" in table  # per-module table
    assert "InfoNCE 3.2500" in reports.training_table(tmp_path)
    global_rows, _ = reports.collect(tmp_path, pool_to=1)
    assert global_rows["GIM (Greedy InfoMax)"] == {"all": 0.5}
    reports.plot_budgets(rows, tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_ticket_plot_and_table_from_round_files(tmp_path):
    for label, acc in (("ticket0", 0.9), ("ticket1", 0.8), ("reinit", 0.8)):
        rounds = 2 if label == "ticket1" else 3  # seed 1 is one round behind
        for r, remaining in enumerate((1.0, 0.8, 0.64)[:rounds]):
            write(tmp_path / label / "rounds" / f"round{r:02d}.json",
                  {"round": r, "remaining": remaining, "test_accuracy": acc - 0.01 * r,
                   "early_stop_iteration": 1000 - 100 * r})
    assert sorted(reports.read_rounds(tmp_path / "ticket0")) == [0, 1, 2]
    runs = {"ticket": [tmp_path / "ticket0", tmp_path / "ticket1"],
            "random re-init": tmp_path / "reinit"}
    reports.plot_tickets(runs, tmp_path / "t.png", title="LeNet")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    table = reports.ticket_table(runs).splitlines()
    assert len(table) == 2 + 2  # the rounds both seeds finished
    assert table[2] == "| 100.0% | 85.00% (80.00-90.00) | 80.00% |"
    assert table[3] == "| 80.0% | 84.00% (79.00-89.00) | 79.00% |"
    write(tmp_path / "prune" / "rounds" / "round01.json",  # a control of round 1 only
          {"round": 1, "remaining": 0.8, "test_accuracy": 0.7, "early_stop_iteration": 900})
    runs["random pruning"] = tmp_path / "prune"
    reports.plot_tickets(runs, tmp_path / "t.png", title="LeNet")
    table = reports.ticket_table(runs).splitlines()
    assert table[2:] == ["| 100.0% | 85.00% (80.00-90.00) | 80.00% | - |",
                         "| 80.0% | 84.00% (79.00-89.00) | 79.00% | 70.00% |"]


def test_deep_table_aggregates_probe_seeds(tmp_path):
    gim = tmp_path / "gim-fmnist-resnet-deep-m3-seed0"
    for seed, acc in ((0, 0.90), (1, 0.92), (2, 0.91)):
        for pool in (3, 1):
            write(gim / "probes" / f"labelsall-module3-pool{pool}-seed{seed}.json",
                  {"labels_per_class": "all", "module": 3, "pool_to": pool, "seed": seed,
                   "test_accuracy": acc - (pool == 1) * 0.05})
    write(gim / "probes" / "labels60-module2-pool3-seed0.json",  # another module: ignored
          {"labels_per_class": 60, "module": 2, "pool_to": 3, "seed": 0,
           "test_accuracy": 0.5})
    sources = reports.deep_sources(tmp_path)
    table = reports.markdown_over_seeds(reports.collect_over_probe_seeds(sources, 3))
    assert "| GIM, module at a time | - | - | 91.0 ± 0.8 (n=3) |" in table
    table = reports.markdown_over_seeds(reports.collect_over_probe_seeds(sources, 1))
    assert "| GIM, module at a time | - | - | 86.0 ± 0.8 (n=3) |" in table
    assert "CPC" not in table
