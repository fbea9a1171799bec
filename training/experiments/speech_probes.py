"""Linear probes on audio features: per-frame phone and per-utterance speaker accuracy.

What training/probe_audio.py runs. Every utterance of the speech corpus contributes its
first 20,480-sample crop (1.28 s, 128 frames of 10 ms; shorter ones are zero-padded and
their padded frames ignored). Features come from a frozen encoder module, or from the
baselines: MFCCs (tf.signal: 25 ms windows, 10 ms hop, 40 mel bands, 13 coefficients,
the classic speech front end) and a randomly initialised encoder. Phone probe: softmax
regression from each frame's features to its phone; speaker probe: from the frames'
mean. Both are trained on the train split and scored on the test split (each speaker's
last fifth of sentences), with `fit_softmax` (standardised features, Adam).
"""

import dataclasses
from pathlib import Path

import numpy as np

from gim_zoo.data.speech_corpus import crops_dataset
from gim_zoo.data.sources import source_from_string
from gim_zoo.models.probe import fit_softmax
from gim_zoo.files import atomic_write_json
from gim_zoo.data import load_speech
from gim_zoo.modality import AUDIO, FRAME_HOP, SAMPLE_RATE
from gim_zoo.validation import check_config, integer



@dataclasses.dataclass
class AudioProbeConfig:
    run_dir: str = ""
    features: str = "encoder"
    model: str = "gim-espeak-audio"
    module: int = 0
    crop_samples: int = 20480
    steps: int = 3000
    seed: int = 0
    data_dir: str = ""
    dataset: str = "espeak_speech"
    alignment_file: str = ""
    max_utterances: int = 0
    out_dir: str = ""

    LIMITS = {"module": integer(0, note="0: the last"),
              "crop_samples": integer(FRAME_HOP, note="a multiple of 160: 10 ms frames"),
              "steps": integer(1), "seed": integer(0), "max_utterances": integer(0)}

    HELP = {
        "run_dir": "a train.py run directory of an audio model (its encoder is probed)",
        "features": "encoder (the run's, or --model's random init without --run_dir) or mfcc",
        "model": "registry audio model, for a random-init encoder (no --run_dir)",
        "module": "which module's output to probe (1-based); 0: the last (the GRU)",
        "steps": "Adam steps of each softmax probe",
        "crop_samples": "samples per waveform crop fed to the encoder (16 kHz; 20480: the "
                        "paper's 1.28 s); features are taken per 10 ms frame of each crop",
        "data_dir": "the speech corpus (default data/speech-corpus), or tfds' data dir "
                    "for LibriSpeech",
        "dataset": "espeak_speech (the synthetic corpus) or librispeech (train-clean-100 "
                   "through tensorflow-datasets)",
        "alignment_file": "LibriSpeech phone alignments: one line per utterance, its id "
                          "then a phone class per 10 ms frame (CPC's format)",
        "max_utterances": "LibriSpeech: probe on the first N utterances (0: all)",
        "out_dir": "where the result JSON goes (default: RUN_DIR/probes; random init: "
                   "runs/random-init-<model>-seed<seed>; mfcc: runs/audio-probes)",
    }


def mfcc_features(waves):
    """(B, samples) -> (B, samples // 160, 13) MFCCs, one frame per 10 ms like the encoder."""
    import tensorflow as tf

    stft = tf.signal.stft(waves, frame_length=400, frame_step=FRAME_HOP, fft_length=512,
                          pad_end=True)
    power = tf.abs(stft) ** 2
    mel = tf.signal.linear_to_mel_weight_matrix(40, stft.shape[-1], SAMPLE_RATE, 20.0, 8000.0)
    log_mel = tf.math.log(tf.tensordot(power, mel, 1) + 1e-6)
    mfcc = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :13]
    return mfcc[:, : waves.shape[1] // FRAME_HOP].numpy()


def encode_utterances(features_of, data, crop_samples):
    """(frame features (N, frames, C), phone labels (N, frames), speakers (N,)) of
    (waveforms, speakers, labels)."""
    audio, speakers, labels = data
    feats, phones = [], []
    for wave, _, phone in crops_dataset(audio, speakers, labels, crop_samples,
                                        batch_size=16, training=False):
        feats.append(np.asarray(features_of(wave)))
        phones.append(phone.numpy())
    return np.concatenate(feats), np.concatenate(phones), speakers


def probe_features(train, test, num_phones, num_speakers, steps, seed):
    """{phone_accuracy, speaker_accuracy} of softmax probes on (features, phones, speakers)."""
    results = {}
    (x, p, s), (xt, pt, st) = train, test
    keep, keep_t = p.reshape(-1) >= 0, pt.reshape(-1) >= 0
    frames, frames_t = x.reshape(-1, x.shape[-1])[keep], xt.reshape(-1, xt.shape[-1])[keep_t]
    (kernel, bias), _ = fit_softmax(frames, p.reshape(-1)[keep], num_phones, steps,
                                    seed=seed)
    results["phone_accuracy"] = float(np.mean(
        np.argmax(frames_t @ kernel + bias, -1) == pt.reshape(-1)[keep_t]))
    (kernel, bias), _ = fit_softmax(x.mean(1), s, num_speakers, steps, seed=seed)
    results["speaker_accuracy"] = float(np.mean(np.argmax(xt.mean(1) @ kernel + bias, -1) == st))
    results.update(phone_frames_train=int(keep.sum()), phone_frames_test=int(keep_t.sum()),
                   utterances_train=len(s), utterances_test=len(st))
    return results


def probe_audio(config):
    """Probe one feature source; writes and returns the result."""
    check_config(config)  # before loading anything
    dataset = source_from_string(config.dataset)
    data = {split: load_speech(dataset, split, config.data_dir,
                               config.alignment_file or None, config.max_utterances or None)
            for split in ("train", "test")}
    num_phones, num_speakers = dataset.class_counts(data, config.data_dir)
    if num_phones < 1:
        raise ValueError(f"{dataset.title} has no phone labels here: the phone probe needs "
                         "--alignment_file")
    if config.features == "mfcc":
        source, features_of = "mfcc", mfcc_features
        out_dir = Path(config.out_dir or "runs/audio-probes")
        module = None
    elif config.features == "encoder":
        encoder, source, out_dir = _encoder(config)
        module = config.module or encoder.num_modules
        model = encoder.feature_model(module, samples=config.crop_samples)
        features_of = lambda w: model(w, training=False)  # noqa: E731
    else:
        raise ValueError(f"features must be 'encoder' or 'mfcc', got {config.features!r}")
    train = encode_utterances(features_of, data["train"], config.crop_samples)
    test = encode_utterances(features_of, data["test"], config.crop_samples)
    result = probe_features(train, test, num_phones, num_speakers, config.steps, config.seed)
    result.update(source=source, module=module, dataset=dataset.name,
                  synthetic_speech=dataset.synthetic,
                  feature_dim=int(train[0].shape[-1]), steps=config.steps, seed=config.seed)
    name = f"{source}-module{module}" if module else source
    path = out_dir / f"audio-{name}-seed{config.seed}.json"
    atomic_write_json(path, result)
    return {**result, "path": str(path)}


def _encoder(config):
    """(encoder, source name, output folder), through the image probe's run loader."""
    from .image_probes import ProbeConfig, load_encoder

    encoder, spec, _, out_dir, _ = load_encoder(ProbeConfig(
        run_dir=config.run_dir, model=config.model, random_init=not config.run_dir,
        seed=config.seed, out_dir=config.out_dir))
    if spec.modality is not AUDIO:
        raise ValueError(f"{spec.name} is not an audio model")
    return encoder, ("random-init-" if not config.run_dir else "") + spec.name, out_dir
