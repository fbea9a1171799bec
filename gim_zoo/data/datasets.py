"""One call per dataset kind, by registry dataset name: labelled image splits and speech
splits. Drivers, the demo and benchmarks read data through these, not through the trainer."""

from gim_zoo.data.fashion_mnist import load_fashion_mnist
from gim_zoo.data.stl10 import load_stl10


def load_split(dataset, split, data_dir=None):
    """(images, labels) numpy arrays for Fashion-MNIST; a tf.data.Dataset for STL-10."""
    if dataset == "fashion_mnist":
        return load_fashion_mnist(split, data_dir or None)
    if dataset == "stl10":
        return load_stl10(split, data_dir or None), None
    raise ValueError(f"unknown dataset {dataset!r}")


def load_speech(dataset, split, data_dir=None, alignment_file=None, max_utterances=None):
    """(waveforms, speaker indices, per-frame phone labels; -1 = unlabelled) of a speech
    dataset: the espeak-ng corpus, or LibriSpeech train-clean-100 through tfds.

    max_utterances: the corpus: the first N of the split; LibriSpeech: read only the
    first N utterances of train-clean-100 (held in memory), then split them."""
    if dataset == "espeak_speech":
        from gim_zoo.data.speech_corpus import DEFAULT_DIR, read_split

        audio, speakers, labels = read_split(data_dir or DEFAULT_DIR, split)
        if max_utterances:
            audio, speakers, labels = (audio[:max_utterances], speakers[:max_utterances],
                                       labels[:max_utterances])
        return audio, speakers, labels
    if dataset == "librispeech":
        from gim_zoo.data.librispeech import load_librispeech

        return load_librispeech(split, data_dir, alignment_file,
                                max_utterances=max_utterances)
    raise ValueError(f"unknown speech dataset {dataset!r}")
