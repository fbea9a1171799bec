"""Reading a ticket run: the folder an IMP run (training/lottery.py) writes, round by round.

    model, masks = load_ticket("runs/lth/lenet-ticket", 7)  # round 7 as trained
    masks.remaining()                                       # its fraction of weights left

Layout of a ticket run (`config.json` names the network and seed):
    rounds/masksNN.npz           the masks round NN trained under (PruningMasks.save)
    rounds/trainedNN.weights.h5  the network as trained in round NN, before pruning
    rounds/roundNN.json          round NN's metrics, written last: the round is complete
    rewind_point.npz             the weights every round is rewound to
"""

from pathlib import Path

from gim_zoo.files import DamagedFileError, read_json_object
from gim_zoo.lottery.masks import PruningMasks
from gim_zoo.lottery.networks import build_network
from gim_zoo.run_layout import RunLayout


def masks_path(run_dir, r):
    return Path(run_dir) / "rounds" / f"masks{r:02d}.npz"


def trained_weights_path(run_dir, r):
    """The network as trained in round r (before pruning and rewinding): the ticket."""
    return Path(run_dir) / "rounds" / f"trained{r:02d}.weights.h5"


def round_metrics_path(run_dir, r):
    return Path(run_dir) / "rounds" / f"round{r:02d}.json"


def rewind_point_path(run_dir):
    return Path(run_dir) / "rewind_point.npz"


def completed_rounds(run_dir):
    """How many rounds of the run have finished (their metrics are written)."""
    done = 0
    while round_metrics_path(run_dir, done).exists():
        done += 1
    return done


_RECOVER_ROUND = ("restore it from a copy, or delete it: re-running the run's lottery.py "
                  "command trains that round again")


def read_round_metrics(run_dir):
    """Every finished round's metrics (rounds/roundNN.json), round 0 first, up to the first
    unfinished round."""
    return [read_json_object(round_metrics_path(run_dir, r), _RECOVER_ROUND)
            for r in range(completed_rounds(run_dir))]


def round_metrics_by_number(run_dir):
    """{round: metrics} of every finished round, gaps included: a control run may train
    only some rounds (lottery.py --control_rounds)."""
    found = {}
    for path in sorted((Path(run_dir) / "rounds").glob("round[0-9][0-9].json")):
        found[int(path.stem[len("round"):])] = read_json_object(path, _RECOVER_ROUND)
    return found


def common_rounds(runs):
    """The round numbers every one of `runs` (each {round: metrics}) has, in order."""
    runs = list(runs)
    return sorted(set.intersection(*map(set, runs))) if runs else []


def read_round_masks(masks, run_dir, r):
    """Round r's masks of a ticket run, for the kernels of `masks` (not yet assigned)."""
    path = masks_path(run_dir, r)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (has the ticket run reached it?)")
    return masks.read(path)


def ticket_config(run_dir):
    """The settings the run was started with (LotteryConfig of training/lottery.py, as a
    dict): `network`, `seed`, `rounds`, ..."""
    path = RunLayout(run_dir).config_path
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    recover = f"restore it from a copy (or delete {run_dir} to start the run over)"
    config = read_json_object(path, recover)
    if not isinstance(config.get("network"), str):
        raise DamagedFileError(f"{path} names no network (its 'network' is "
                               f"{config.get('network')!r}): {recover}")
    return config


def load_ticket(run_dir, r):
    """(model, masks) of an IMP run as trained in round r, pruned weights exactly zero."""
    from gim_zoo.presets import load_weights_checked

    config = ticket_config(run_dir)
    model = build_network(config["network"], config.get("seed", 0))
    masks = PruningMasks(model)
    path = trained_weights_path(run_dir, r)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: round {r} has not finished")
    load_weights_checked(model, path)
    masks.assign(read_round_masks(masks, run_dir, r))
    return model, masks
