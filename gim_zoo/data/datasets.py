"""One call per dataset kind, for any source (gim_zoo.data.sources) or its name: image
splits held in memory as arrays, and speech splits. Drivers, the demo and benchmarks read
data through these or through `source.load(role)`."""

from gim_zoo.data.sources import source_from_string


def load_split(dataset, split, data_dir=None):
    """(images uint8 (N, H, W, C), labels (N,)) of an in-memory source's split ("train" or
    "test"); streamed sources (tfds, folders) are read with source.load(role) and the
    pipelines of gim_zoo.data.pipelines instead."""
    source = source_from_string(dataset)
    if not source.in_memory:
        raise ValueError(f"{source.name} is streamed, not held in memory: read it with "
                         f"source.load({split!r}) and gim_zoo.data.pipelines.eval_pipeline")
    loaded = source.load(split, data_dir)
    return loaded.images, loaded.labels


def load_speech(dataset, split, data_dir=None, alignment_file=None, max_utterances=None):
    """(waveforms, speaker indices, per-frame phone labels; -1 = unlabelled) of a speech
    source: the espeak-ng corpus, or LibriSpeech train-clean-100 through tfds.

    max_utterances: the corpus: the first N of the split; LibriSpeech: read only the
    first N utterances of train-clean-100 (held in memory), then split them."""
    return source_from_string(dataset).load(split, data_dir, alignment_file, max_utterances)
