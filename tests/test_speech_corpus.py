"""The espeak-ng speech corpus: deterministic, phone labels aligned with the audio."""

import ctypes.util
import hashlib

import numpy as np
import pytest

from gim_zoo.data import DatasetNotFoundError
from gim_zoo.data.speech_corpus import (crops_dataset, frame_labels, make_corpus, read_split,
                                        read_corpus_manifest, split_utterances)

pytestmark = pytest.mark.skipif(
    not (ctypes.util.find_library("espeak-ng") or ctypes.util.find_library("espeak-ng.so.1")),
    reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "corpus"
    make_corpus(path, speakers=3, utterances_per_speaker=5, progress=False)
    return path


def digest(folder):
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.relative_to(folder).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic(corpus, tmp_path):
    again = tmp_path / "again"
    make_corpus(again, speakers=3, utterances_per_speaker=5, progress=False)
    assert digest(again) == digest(corpus)
    other = tmp_path / "other"
    make_corpus(other, speakers=3, utterances_per_speaker=5, seed=1, progress=False)
    assert digest(other) != digest(corpus)


def test_segments_cover_the_audio_and_silence_is_quiet(corpus):
    manifest = read_corpus_manifest(corpus)
    assert manifest["synthetic"] and manifest["sample_rate"] == 16000
    silence = manifest["phones"].index("sil")
    audio, _, _ = read_split(corpus, "train")
    quiet, loud = [], []
    for utt, wave in zip(split_utterances(manifest, "train"), audio):
        segments = utt["segments"]
        assert segments[0][0] == 0 and segments[-1][1] == utt["num_samples"] == len(wave)
        assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))  # contiguous
        labels = frame_labels(utt)
        assert len(labels) == utt["num_samples"] // 160
        for start, end, phone in segments:
            level = float(np.sqrt(np.mean(wave[start:end] ** 2)))
            (quiet if phone == silence else loud).append(level)
    # the labels line up with the sound: silences are much quieter than phones
    assert quiet and np.median(quiet) < 0.2 * np.median(loud)


def test_splits_and_crops(corpus):
    manifest = read_corpus_manifest(corpus)
    train, test = split_utterances(manifest, "train"), split_utterances(manifest, "test")
    assert len(train) == 12 and len(test) == 3
    assert {u["id"] for u in train}.isdisjoint(u["id"] for u in test)
    assert sorted({u["speaker"] for u in test}) == [0, 1, 2]
    audio, speakers, labels = read_split(corpus, "test")
    batch = next(iter(crops_dataset(audio, speakers, labels, 8000, batch_size=3,
                                    training=True)))
    wave, speaker, phones = (t.numpy() for t in batch)
    assert wave.shape == (3, 8000) and phones.shape == (3, 50) and speaker.shape == (3,)
    assert np.abs(wave).max() <= 1.0 and (phones >= 0).all()
    with pytest.raises(ValueError, match="multiple of hop"):
        crops_dataset(audio, speakers, labels, 8001)


def test_missing_corpus_names_the_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="make_speech_corpus.py --out_dir="):
        read_corpus_manifest(tmp_path / "nothing")


def test_audio_probes_on_mfcc_and_a_random_encoder(corpus, tmp_path):
    from training.experiments.speech_probes import AudioProbeConfig, mfcc_features, probe_audio

    assert mfcc_features(np.zeros((2, 3200), "float32")).shape == (2, 20, 13)
    mfcc = probe_audio(AudioProbeConfig(features="mfcc", crop_samples=8000, steps=300,
                                        data_dir=str(corpus), out_dir=str(tmp_path)))
    assert mfcc["utterances_test"] == 3 and mfcc["phone_frames_test"] > 50
    assert mfcc["synthetic_speech"] and (tmp_path / "audio-mfcc-seed0.json").exists()
    # 3 speakers, clean synthetic voices: MFCC means tell them apart
    assert mfcc["speaker_accuracy"] == 1.0
    assert 1 / len(read_corpus_manifest(corpus)["phones"]) < mfcc["phone_accuracy"] <= 1.0
    from training.experiments.reports import audio_table

    assert "| mfcc | 13 |" in audio_table([mfcc["path"]])
    with pytest.raises(ValueError, match="not an audio model"):
        probe_audio(AudioProbeConfig(model="gim-fmnist-resnet", data_dir=str(corpus),
                                     out_dir=str(tmp_path)))


@pytest.mark.slow
def test_supervised_audio_baseline_learns_phones(corpus, tmp_path):
    """supervised-espeak-audio: the encoder trained end-to-end on per-frame phones; the
    padded frames (label -1) weigh nothing, and accuracy rises above chance."""
    from training.experiments.pretraining import TrainConfig, train

    metrics = train(TrainConfig(model="supervised-espeak-audio", out_dir=str(tmp_path / "run"),
                                data_dir=str(corpus), epochs=6, batch_size=4,
                                learning_rate=3e-3, verbose=0))
    assert metrics["status"] == "complete" and metrics["objective"] == "supervised"
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    loss = [float(row.split(",")[header.index("loss")]) for row in history[1:]]
    assert loss[-1] < loss[0]
    # the most common phone (silence) alone scores well; the model must beat chance
    assert metrics["final_train_logs"]["accuracy"] > 1 / len(read_corpus_manifest(corpus)["phones"])
