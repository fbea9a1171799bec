"""Data sources, said once: what a dataset is (its splits, sizes, crop, channels, labels)
and the one parser of `--dataset` strings.

    fashion_mnist | stl10             built-ins (BUILTINS below)
    tfds/NAME  or  tfds/NAME:CONFIG   any tensorflow-datasets image dataset
    folder/PATH                       a folder of PNG / JPEG / GIF / BMP files

Everything else (pipelines, the registry, model cards, the experiment drivers) takes a
source object and asks it, instead of branching on a dataset's name. Adding a built-in
dataset is one entry in BUILTINS (and, if it needs a loader of its own, its module).

A source is pure data until it is loaded: parsing a string touches no disk and imports no
TensorFlow (`gim_zoo.info` reads the registry's sources). `load(role)` gives a split:
roles are "pretrain" (self-supervised training), "train" (labels: probes, supervised
training, fine-tuning) and "test".
"""

import dataclasses
import importlib
import os
import re

from gim_zoo import modality

ROLES = ("pretrain", "train", "test")
# Folder sources without a test/ subfolder hold out this fraction of their files (the
# same files whatever the run's seed: HOLDOUT_SEED), unless --test_fraction says otherwise.
DEFAULT_TEST_FRACTION = 0.1
HOLDOUT_SEED = 0
SOURCE_FORMS = "fashion_mnist, stl10, tfds/NAME[:CONFIG] or folder/PATH"


class SourceError(ValueError):
    """A data source that cannot serve what was asked of it; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """An image dataset and how its images become model inputs.

    Geometry: images are brought to `size` x `size` (resized where they differ), then
    training takes a random `crop` x `crop` window (after padding by `pad`) plus a
    horizontal flip, evaluation the centre crop; `channels` 1 converts RGB to grayscale,
    3 grayscale to RGB. 0 means "fitted to the model" (see `fitted`)."""
    name: str  # what --dataset takes, and what config.json records
    title: str  # how cards and messages name it
    size: int = 0
    crop: int = 0
    pad: int = 0
    channels: int = 0
    pretrain_split: str = "train"
    train_split: str = "train"
    test_split: str = "test"
    num_classes: int = 0  # 0: found when loaded (folders: class subfolders)
    hf_dataset: str = ""  # the Hub's copy, for model cards' front matter
    provenance: str = ""  # where the files came from, in words (model cards)

    modality = modality.IMAGE

    def __str__(self):
        return self.name

    @property
    def slug(self):
        """The name as one path component (default folders of results per source)."""
        return _slug(self.name)

    @property
    def in_memory(self):
        """Whether splits are numpy arrays (exact, resumable epochs_pipeline) rather than
        streamed through tf.data."""
        return False

    def split_name(self, role):
        """The dataset's own name of a role's split."""
        if role not in ROLES:
            raise ValueError(f"split role must be one of {ROLES}, got {role!r}")
        return getattr(self, f"{role}_split")

    def fitted(self, image_size, channels, like):
        """This source for a model taking image_size x image_size x channels images.

        like: the model's registered source, whose geometry is kept in proportion: STL-10
        models take a 64 crop of images brought to 96 (a 1.5 ratio), Fashion-MNIST models
        a 28 crop of 28 images padded by 2. The model's own source at the model's own input
        is returned unchanged (bit-identical pipelines)."""
        if channels not in (1, 3):
            raise SourceError(f"--channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        if image_size < 1:
            raise SourceError(f"--image_size must be positive, got {image_size}")
        if self == like and image_size == like.crop and channels == like.channels:
            return self
        scale = image_size / like.crop
        return dataclasses.replace(self, size=max(image_size, round(like.size * scale)),
                                   crop=image_size, pad=round(like.pad * scale),
                                   channels=channels)

    def check_fitted(self):
        if not (self.size and self.crop and self.channels):
            raise ValueError(f"{self.name} is not fitted to a model input yet "
                             "(source.fitted(image_size, channels, like))")

    def load(self, role, data_dir=None, max_examples=0):
        """The split of `role`: an ArraySplit (in memory) or a streamed split (see
        gim_zoo.data.splits). max_examples: only the first N examples."""
        raise NotImplementedError

    def check(self, roles, data_dir=None, labels=(), max_examples=0):
        """Load the splits of `roles` (which lists files, opens tfds builders), refusing
        early what would fail later: no images, unreadable files, a role in `labels`
        whose split has no labels. Returns {role: split}."""
        splits = {role: self.load(role, data_dir, max_examples if role != "test" else 0)
                  for role in roles}
        for role in labels:
            if not splits[role].labelled:
                raise SourceError(
                    f"{self.name}'s {self.split_name(role)} split has no labels, and this "
                    f"command needs them ({_LABEL_HINT})")
        return splits

    def calibration_inputs(self, data_dir=None, count=200):
        """The first `count` training images as the model takes them (centre crop,
        channels converted): float32 (count, crop, crop, channels), for int8 export."""
        from gim_zoo.data.pipelines import eval_pipeline

        self.check_fitted()
        split = self.load("train", data_dir).first(count)
        return _concat(x for x, _ in eval_pipeline(split, self, batch_size=count))

    def few_labels(self, labels_per_class, seed, data_dir=None):
        """(train split of labels_per_class examples per class drawn by `seed`, 0: all;
        test split), for fine-tuning."""
        from gim_zoo.models.probe import balanced_subset

        train, test = self.check(("train", "test"), data_dir, labels=("train", "test")).values()
        return train.subset(balanced_subset(train.labels, labels_per_class or None, seed)), test


def _slug(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_.")


_LABEL_HINT = ("give a labelled source: a built-in, a tfds dataset with a 'label' "
               "feature, or a folder with one subfolder per class")


def _concat(arrays):
    import numpy as np

    return np.concatenate([np.asarray(a) for a in arrays])


@dataclasses.dataclass(frozen=True)
class ArraySource(ImageSource):
    """A built-in held in memory: `loader` ("module:function") returns (uint8 images
    (N, H, W, C), int64 labels (N,)) for a split name and a data dir."""
    loader: str = ""

    @property
    def in_memory(self):
        return True

    def load(self, role, data_dir=None, max_examples=0):
        from gim_zoo.data.splits import ArraySplit

        module, function = self.loader.split(":")
        images, labels = getattr(importlib.import_module(module), function)(
            self.split_name(role), data_dir or None)
        split = ArraySplit(images, labels)
        return split.first(max_examples) if max_examples else split


@dataclasses.dataclass(frozen=True)
class TfdsSource(ImageSource):
    """A tensorflow-datasets dataset with an `image` feature (and optionally a ClassLabel
    `label`), streamed: images stay encoded until the input pipeline decodes them.
    test_fraction: datasets without a test split hold out the train split's last fraction."""
    tfds_name: str = ""
    test_fraction: float = 0.0

    def fetch_command(self):
        return ("python -c \"import tensorflow_datasets as tfds; "
                f"tfds.builder('{self.tfds_name}').download_and_prepare()\"")

    def load(self, role, data_dir=None, max_examples=0):
        from gim_zoo.data.splits import TfdsSplit

        return TfdsSplit.open(self, role, data_dir, max_examples)


@dataclasses.dataclass(frozen=True)
class FolderSource(ImageSource):
    """A folder of image files, streamed (listed, never loaded whole).

    Class subfolders give labels (classes in sorted order); image files directly in the
    folder make an unlabelled split. PATH/train, PATH/test (and PATH/unlabelled, for
    pre-training) are the splits when present; otherwise test_fraction of the files,
    chosen with HOLDOUT_SEED, are the test split."""
    path: str = ""
    test_fraction: float = 0.0

    def load(self, role, data_dir=None, max_examples=0):
        from gim_zoo.data.splits import FolderSplit

        return FolderSplit.open(self, role, max_examples)

    def holds_out(self):
        """Whether the test split is a held-out fraction (no PATH/test folder)."""
        return not os.path.isdir(os.path.join(self.path, "test"))


@dataclasses.dataclass(frozen=True)
class SpeechSource:
    """A speech dataset: 16 kHz waveforms, speaker indices and per-frame phone labels.

    loader ("module:function") is called as f(split, data_dir, alignment_file,
    max_utterances) -> (waveforms, speakers, labels). test_from_train: the test split is
    carved out of the first max_utterances read (so a limit applies to it too)."""
    name: str
    title: str
    loader: str
    short_title: str = ""
    synthetic: bool = False
    test_from_train: bool = False
    provenance: str = ""
    manifest_classes: bool = False  # phone / speaker counts from the corpus's manifest

    modality = modality.AUDIO

    def __str__(self):
        return self.name

    def load(self, split, data_dir=None, alignment_file=None, max_utterances=None):
        module, function = self.loader.split(":")
        return getattr(importlib.import_module(module), function)(
            split, data_dir or None, alignment_file or None, max_utterances=max_utterances)

    def class_counts(self, data, data_dir=None):
        """(phones, speakers) of loaded {split: (waves, speakers, labels)}."""
        if self.manifest_classes:
            from gim_zoo.data.speech_corpus import DEFAULT_DIR, read_corpus_manifest

            manifest = read_corpus_manifest(data_dir or DEFAULT_DIR)
            return len(manifest["phones"]), len(manifest["speakers"])
        phones = 1 + max(lab.max() for lab in data["train"][2] + data["test"][2])
        return phones, 1 + int(data["train"][1].max())

    def calibration_inputs(self, crop_samples, data_dir=None, count=200):
        """Waveform crops of the training split (int8 export)."""
        from gim_zoo.data.speech_corpus import DEFAULT_DIR, first_crops

        return first_crops(data_dir or DEFAULT_DIR, "train", crop_samples, count)


FASHION_MNIST = ArraySource(
    "fashion_mnist", "Fashion-MNIST", size=28, crop=28, pad=2, channels=1, num_classes=10,
    loader="gim_zoo.data.fashion_mnist:load_fashion_mnist",
    hf_dataset="zalando-datasets/fashion_mnist",
    provenance="the IDX files of Debian's dataset-fashion-mnist, the same files "
               "tensorflow-datasets downloads")
STL10 = TfdsSource(
    # The paper's: grayscale 64x64 crops of the 96x96 images, pre-trained on the 100k
    # unlabelled images, probed on the 5k labelled train split, tested on the 8k test.
    "stl10", "STL-10", size=96, crop=64, pad=0, channels=1, num_classes=10,
    pretrain_split="unlabelled", tfds_name="stl10", hf_dataset="tanganke/stl10",
    provenance="tensorflow-datasets")
ESPEAK_SPEECH = SpeechSource(
    "espeak_speech", "synthetic speech (espeak-ng corpus of gim_zoo)",
    "gim_zoo.data.speech_corpus:load_corpus", short_title="synthetic speech",
    synthetic=True, manifest_classes=True,
    provenance=(
        "**synthetic speech**: a deterministic corpus that Debian's espeak-ng speaks "
        "(`python training/make_speech_corpus.py`; several voices as speakers, per-frame "
        "phone labels from espeak-ng's phoneme events), on a 2-core CPU machine with no "
        "GPU and no network. Not LibriSpeech, not the paper's model size (128 channels and "
        "a 128-unit GRU instead of 512 / 256): the numbers below are not comparable with "
        "the paper's."))
LIBRISPEECH = SpeechSource(
    "librispeech", "LibriSpeech train-clean-100",
    "gim_zoo.data.librispeech:load_librispeech", short_title="LibriSpeech",
    test_from_train=True,
    provenance="LibriSpeech train-clean-100 (tensorflow-datasets), with the phone "
               "alignments named in metrics.json.")

# The built-ins, by the name --dataset and the registry use. A new built-in is one more
# entry here.
BUILTINS = {s.name: s for s in (FASHION_MNIST, STL10, ESPEAK_SPEECH, LIBRISPEECH)}

_TFDS_NAME = re.compile(r"^[a-z0-9_]+(/[A-Za-z0-9_.\-]+)?(:[0-9.*]+)?$")


def source_from_string(text, test_fraction=0.0):
    """The source a --dataset string names (a source object is returned as is).

    Touches no disk: loading a split (source.load / source.check) is what finds a missing
    folder or an unknown tfds name. test_fraction: folder and tfds sources without a test
    split hold out this fraction (0: DEFAULT_TEST_FRACTION)."""
    if isinstance(text, (ImageSource, SpeechSource)):
        return text
    if not isinstance(text, str) or not text.strip():
        raise SourceError(f"--dataset must name a data source ({SOURCE_FORMS}), got {text!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise SourceError(f"--test_fraction must be in [0, 1), got {test_fraction}")
    fraction = test_fraction or DEFAULT_TEST_FRACTION
    text = text.strip()
    if text in BUILTINS:
        return BUILTINS[text]
    prefix, _, rest = text.partition("/")
    if prefix == "tfds" and rest:
        name, _, config = rest.partition(":")
        tfds_name = f"{name}/{config}" if config else name
        if not _TFDS_NAME.match(tfds_name):
            raise SourceError(f"--dataset={text}: {rest!r} is not a tensorflow-datasets name "
                              "(lower-case letters, digits and _, then optionally :CONFIG)")
        for builtin in BUILTINS.values():  # tfds/stl10 is the built-in stl10
            if getattr(builtin, "tfds_name", None) == tfds_name:
                return builtin
        return TfdsSource(text, f"{tfds_name} (tensorflow-datasets)", tfds_name=tfds_name,
                          test_fraction=fraction, provenance="tensorflow-datasets")
    if prefix == "folder" and rest:
        path = os.path.expanduser(rest)
        return FolderSource(text, f"the image folder {rest}", path=path,
                            test_fraction=fraction, provenance=f"the image folder {rest}")
    if "/" in text:
        raise SourceError(f"--dataset={text}: unknown prefix {prefix + '/'!r}; a data source is "
                          f"{SOURCE_FORMS}")
    raise SourceError(f"--dataset={text}: no built-in dataset of that name (built-ins: "
                      f"{', '.join(n for n, s in BUILTINS.items())}); for a "
                      f"tensorflow-datasets dataset write tfds/{text}, for a folder "
                      f"folder/{text}")


def image_source(text, test_fraction=0.0):
    """source_from_string, refusing a speech source (an image model's --dataset)."""
    source = source_from_string(text, test_fraction)
    if not isinstance(source, ImageSource):
        raise SourceError(f"--dataset={source.name} is a speech dataset; image models take "
                          f"{SOURCE_FORMS}")
    return source
