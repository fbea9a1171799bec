"""LibriSpeech (train-clean-100) through tensorflow-datasets, with user-given phone alignments.

For users who have LibriSpeech: these machines are offline, so nothing downloads unless
asked (download=True). tfds gives waveforms, speaker and utterance ids; phone labels are
not part of LibriSpeech, so they come from an alignment file in the format the CPC and
GIM papers used (`converted_aligned_phones.txt`): one line per utterance,

    103-1240-0000 0 0 0 12 12 12 12 31 31 ...

the utterance id and then one integer phone class per 10 ms frame (160 samples at
16 kHz). The result has the same shape as the speech corpus's `read_split` (waveforms in
[-1, 1], speaker indices, per-frame labels with -1 where nothing is aligned), so
`crops_dataset`, training and the probes take either.
"""

from pathlib import Path

import numpy as np

from gim_zoo.data.fashion_mnist import DatasetNotFoundError
from gim_zoo.modality import FRAME_HOP

FETCH_COMMAND = ("python -c \"import tensorflow_datasets as tfds; "
                 "tfds.builder('librispeech').download_and_prepare()\"")


def read_alignments(path):
    """{utterance id: int32 phone class per 10 ms frame} from an alignment file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"alignment file {path} does not exist (one line per utterance: its id, then "
            "one phone class per 10 ms frame, as CPC's converted_aligned_phones.txt)")
    alignments = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            labels = np.array([int(v) for v in fields[1:]], np.int32)
        except ValueError:
            raise ValueError(f"{path}, line {number}: phone classes must be integers, "
                             f"got {line[:80]!r}") from None
        if len(labels) == 0 or labels.min() < 0:
            raise ValueError(f"{path}, line {number}: utterance {fields[0]!r} needs one "
                             "non-negative phone class per frame")
        alignments[fields[0]] = labels
    if not alignments:
        raise ValueError(f"{path} holds no alignments")
    return alignments


def aligned_frame_labels(alignment, num_samples, hop=FRAME_HOP):
    """An utterance's labels cut or padded (with -1) to its num_samples // hop frames."""
    frames = num_samples // hop
    labels = np.full(frames, -1, np.int32)
    if alignment is not None:
        labels[: min(frames, len(alignment))] = alignment[:frames]
    return labels


def to_arrays(examples, split, alignments=None, test_fraction=0.2, hop=FRAME_HOP):
    """tfds LibriSpeech examples (dicts of numpy) -> (waveforms, speaker indices, labels)
    of `split`: per speaker, utterances sorted by id, the last `test_fraction` are "test"
    (speaker classification needs the same speakers on both sides, as in the paper)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    by_speaker = {}
    for e in examples:
        by_speaker.setdefault(int(e["speaker_id"]), []).append(e)
    audio, speaker, labels = [], [], []
    for index, speaker_id in enumerate(sorted(by_speaker)):
        own = sorted(by_speaker[speaker_id], key=lambda e: _utterance_id(e))
        cut = len(own) - max(1, int(round(len(own) * test_fraction)))
        for e in own[:cut] if split == "train" else own[cut:]:
            wave = np.asarray(e["speech"], np.float32) / 32768.0
            audio.append(wave)
            speaker.append(index)
            labels.append(aligned_frame_labels((alignments or {}).get(_utterance_id(e)), len(wave),
                                       hop))
    return audio, np.array(speaker, np.int32), labels


def _utterance_id(example):
    value = example["id"]
    return value.decode() if isinstance(value, bytes) else str(value)

def load_librispeech(split, data_dir=None, alignment_file=None, subset="train_clean100",
                     max_utterances=None, download=False):
    """(waveforms, speaker indices, per-frame phone labels) of the train or test part of
    a LibriSpeech subset (the paper: train-clean-100).

    Without an alignment file every label is -1 (self-supervised training needs none;
    the phone probe does)."""
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load("librispeech", split=subset, data_dir=data_dir or None,
                       download=download)
    except Exception as e:
        raise DatasetNotFoundError(
            f"LibriSpeech ({subset}) is not prepared in tensorflow-datasets' data dir "
            f"({data_dir or '~/tensorflow_datasets'}). Fetch it (about 60 GB, needs "
            f"apache-beam) with: {FETCH_COMMAND}") from e
    if max_utterances:
        ds = ds.take(max_utterances)
    alignments = read_alignments(alignment_file) if alignment_file else None
    return to_arrays(tfds.as_numpy(ds), split, alignments)
