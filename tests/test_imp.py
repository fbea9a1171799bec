"""The IMP driver: exact sparsity per round, resume at the right round, matched controls."""

import pytest

from gim_zoo.imp import LotteryConfig, run_imp


def config(tmp_path, name, **kw):
    settings = dict(rounds=3, epochs=1, max_examples=600, verbose=0)
    return LotteryConfig(out_dir=str(tmp_path / name), **{**settings, **kw})


def expected_remaining(rounds):
    """LeNet-300-100 kernels: 784x300 and 300x100 at 20% per round, 100x10 at 10%."""
    alive = [784 * 300, 300 * 100, 100 * 10]
    rates = [0.2, 0.2, 0.1]
    out = []
    for _ in range(rounds):
        out.append(sum(alive) / (784 * 300 + 300 * 100 + 100 * 10))
        alive = [a - round(r * a) for a, r in zip(alive, rates)]
    return out


def test_rounds_prune_exact_fractions_and_resume(tmp_path):
    rounds = run_imp(config(tmp_path, "ticket"))
    assert [r["remaining"] for r in rounds] == pytest.approx(expected_remaining(3), abs=1e-9)
    assert all(r["test_accuracy"] > 0.3 for r in rounds)
    run_dir = tmp_path / "ticket"
    first = (run_dir / "rounds" / "round00.json").stat().st_mtime_ns
    (run_dir / "rounds" / "round02.json").unlink()  # as if killed during round 2
    resumed = run_imp(config(tmp_path, "ticket", rounds=4))
    assert (run_dir / "rounds" / "round00.json").stat().st_mtime_ns == first  # not redone
    assert [r["remaining"] for r in resumed] == pytest.approx(expected_remaining(4), abs=1e-9)


@pytest.mark.parametrize("control", ["random_prune", "random_reinit"])
def test_controls_use_the_tickets_sparsity(tmp_path, control):
    ticket = run_imp(config(tmp_path, "ticket"))
    rounds = run_imp(config(tmp_path, control, control=control,
                            ticket_dir=str(tmp_path / "ticket")))
    assert [r["remaining"] for r in rounds] == pytest.approx([r["remaining"] for r in ticket])


def test_control_without_ticket_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs --ticket_dir"):
        run_imp(config(tmp_path, "c", control="random_prune"))
    assert not (tmp_path / "c").exists()  # refused before anything was written
