"""Script flags have real descriptions and show in `--help`; a finished training run is
not re-evaluated when its command is run again; the final evaluation can be limited."""

import dataclasses
import json

import pytest
from absl import flags

from training.experiments.flags import define_flags, help_for
from tests.conftest import TINY_ENCODER


def script_configs():
    from training.experiments.speech_probes import AudioProbeConfig
    from training.experiments.rifle_finetuning import FinetuneConfig
    from training.experiments.lottery_rounds import LotteryConfig
    from training.experiments.image_probes import ProbeConfig
    from training.experiments.teleport_comparison import TeleportConfig
    from training.experiments.pretraining import TrainConfig

    # every config behind training/*.py's run_script
    return [TrainConfig, ProbeConfig, FinetuneConfig, LotteryConfig, AudioProbeConfig,
            TeleportConfig]


@pytest.mark.parametrize("config_cls", script_configs(), ids=lambda c: c.__name__)
def test_every_flag_has_a_description(config_cls):
    for field in dataclasses.fields(config_cls):
        text = help_for(config_cls, field.name)
        assert text and len(text.split()) >= 3, (config_cls.__name__, field.name, text)


def test_help_lists_the_scripts_own_flags():
    from training.experiments.pretraining import TrainConfig

    values = flags.FlagValues()
    define_flags(TrainConfig, module_name="training/train.py", flag_values=values)
    text = values.module_help("training/train.py")  # what `train.py --help` prints
    for field in dataclasses.fields(TrainConfig):
        assert f"--{field.name}:" in text or f"--[no]{field.name}:" in text, field.name
    assert "registered number" in text and "--final_eval_examples" in text


@pytest.mark.slow
def test_final_eval_is_limited_and_a_finished_run_is_not_redone(tmp_path, monkeypatch,
                                                                capsys):
    import keras

    from training.experiments.pretraining import TrainConfig, train

    config = TrainConfig(
        model="gim-fmnist-resnet", out_dir=str(tmp_path / "run"), epochs=2, batch_size=32,
        max_examples=64, eval_examples=32, final_eval_examples=40, verbose=0,
        stem_width=TINY_ENCODER["stem_width"],
        widths=",".join(map(str, TINY_ENCODER["widths"])),
        blocks=",".join(map(str, TINY_ENCODER["blocks"])))
    evaluated = []
    evaluate = keras.Model.evaluate

    def counting_evaluate(self, x=None, *args, **kwargs):
        evaluated.append(sum(int(batch.shape[0]) for batch in x))
        return evaluate(self, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "evaluate", counting_evaluate)
    metrics = train(config)
    # fit's per-epoch validation (--eval_examples), then the final evaluation
    assert metrics["status"] == "complete" and evaluated == [32, 32, 40]

    again = train(config)  # the same command: nothing trained or evaluated
    assert evaluated == [32, 32, 40]
    assert again == json.loads((tmp_path / "run" / "metrics.json").read_text())
    err = capsys.readouterr().err
    assert "already complete" in err and "metrics.json" in err
    # a finished run kept without its backup (the compact form committed to git): still
    # complete, not "backup missing"
    import shutil

    shutil.rmtree(tmp_path / "run" / "backup")
    assert train(config) == again and evaluated == [32, 32, 40]
