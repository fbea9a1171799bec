"""LibriSpeech through tensorflow-datasets: alignment files, splits, the missing-data error.

No LibriSpeech here: examples are built in memory in tfds' format."""

import numpy as np
import pytest

from gim_zoo.data import DatasetNotFoundError
from gim_zoo.data.librispeech import (FETCH_COMMAND, aligned_frame_labels, load_librispeech,
                                      read_alignments, to_arrays)


def example(utterance, speaker, samples):
    return {"id": utterance.encode(), "speaker_id": speaker, "chapter_id": 1,
            "speech": np.full(samples, 16384, np.int16), "text": b"hello"}


def test_alignment_file_is_parsed_and_refused_by_line(tmp_path):
    path = tmp_path / "aligned.txt"
    path.write_text("19-198-0001 0 0 5 5 7\n\n26-495-0000 3 3\n")
    alignments = read_alignments(path)
    assert alignments["19-198-0001"].tolist() == [0, 0, 5, 5, 7]
    assert alignments["26-495-0000"].dtype == np.int32
    path.write_text("19-198-0001 0 0 x\n")
    with pytest.raises(ValueError, match="line 1: phone classes must be integers"):
        read_alignments(path)
    path.write_text("19-198-0001 0 -2\n")
    with pytest.raises(ValueError, match="line 1"):
        read_alignments(path)
    with pytest.raises(FileNotFoundError, match="converted_aligned_phones"):
        read_alignments(tmp_path / "missing.txt")


def test_frame_labels_follow_the_audio_length():
    assert aligned_frame_labels(np.array([1, 2, 3]), 5 * 160).tolist() == [1, 2, 3, -1, -1]
    assert aligned_frame_labels(np.array([1, 2, 3, 4]), 2 * 160 + 100).tolist() == [1, 2]
    assert aligned_frame_labels(None, 320).tolist() == [-1, -1]


def test_speakers_are_split_by_utterance_with_their_alignments():
    examples = [example(f"{s}-1-{i:04d}", s, 800 + 160 * i) for s in (40, 7) for i in range(5)]
    alignments = {"7-1-0004": np.arange(9, dtype=np.int32)}
    train = to_arrays(examples, "train", alignments)
    test = to_arrays(examples, "test", alignments)
    assert len(train[0]) == 8 and len(test[0]) == 2
    assert test[1].tolist() == [0, 1]  # speaker 7 -> 0, speaker 40 -> 1 (sorted ids)
    assert train[0][0].dtype == np.float32 and train[0][0][0] == pytest.approx(0.5)
    # the last utterance of speaker 7 is in test, with its 9 aligned frames
    assert test[2][0].tolist() == list(range(9))
    assert (test[2][1] == -1).all()  # no alignment: unlabelled


def test_missing_librispeech_names_the_fetch_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="download_and_prepare"):
        load_librispeech("train", data_dir=str(tmp_path))
    assert "librispeech" in FETCH_COMMAND
