"""Data sources: the --dataset parser, folders of images (layouts, hold-out, early errors
naming the file), streamed pipelines (resize / channel conversion, epochs a pure function
of (seed, epoch), a file that fails to decode mid-epoch named), tfds sources on
tensorflow-datasets' mock data, and bad sources refused before a run directory exists."""

import ast
import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from gim_zoo.data import sources
from gim_zoo.data.folder import ImageFileError, image_channels
from gim_zoo.data.pipelines import (CorruptImageError, corrupt_images_named, epochs_pipeline,
                                    eval_pipeline, train_pipeline)
from gim_zoo.data.sources import (FASHION_MNIST, STL10, FolderSource, SourceError, TfdsSource,
                                  image_source, source_from_string)

ROOT = Path(__file__).resolve().parents[1]


def png(array):
    return tf.io.encode_png(np.asarray(array, np.uint8)).numpy()


def write_images(folder, count, shape=(28, 28, 1), seed=0, classes=None, name="img"):
    """`count` random PNGs in folder (or, with classes, spread over class subfolders)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        where = Path(folder) / (f"class{i % classes}" if classes else "")
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"{name}{i:04d}.png"
        path.write_bytes(png(rng.integers(0, 256, shape)))
        paths.append(path)
    return paths


def corrupt_body(path):
    """Spoil a PNG's pixel data but keep its header and IEND ending (the header check
    passes; only decoding fails)."""
    data = bytearray(Path(path).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = b"\0" * 16
    Path(path).write_bytes(bytes(data))


def fitted(text, size=28, channels=1, like=FASHION_MNIST, **kwargs):
    return image_source(text, **kwargs).fitted(size, channels, like=like)


# --- the parser ------------------------------------------------------------------------

def test_builtins_tfds_and_folders_parse_without_touching_disk(tmp_path):
    assert source_from_string("fashion_mnist") is FASHION_MNIST
    assert source_from_string("stl10") is STL10 and source_from_string("tfds/stl10") is STL10
    cifar = source_from_string("tfds/cifar10")
    assert isinstance(cifar, TfdsSource) and cifar.tfds_name == "cifar10"
    assert source_from_string("tfds/imagenet2012_corrupted:1.0.0").tfds_name == \
        "imagenet2012_corrupted/1.0.0"
    folder = source_from_string(f"folder/{tmp_path}/nothing-here-yet")
    assert isinstance(folder, FolderSource) and folder.path == f"{tmp_path}/nothing-here-yet"
    assert source_from_string(FASHION_MNIST) is FASHION_MNIST


@pytest.mark.parametrize("text, message", [
    ("hfds/beans", "unknown prefix 'hfds/'"),
    ("cifar10", "write tfds/cifar10"),
    ("tfds/Not A Name", "not a tensorflow-datasets name"),
    ("", "must name a data source"),
])
def test_malformed_sources_are_refused_by_the_parser(text, message):
    with pytest.raises(SourceError, match=message):
        source_from_string(text)


def test_image_models_refuse_speech_sources():
    with pytest.raises(SourceError, match="speech dataset"):
        image_source("espeak_speech")


def test_fitting_keeps_the_registered_geometry_in_proportion():
    assert STL10.fitted(64, 1, like=STL10) is STL10  # the paper's input: unchanged
    small = STL10.fitted(32, 3, like=STL10)
    assert (small.size, small.crop, small.pad, small.channels) == (48, 32, 0, 3)
    folder = fitted("folder/x", 56)
    assert (folder.size, folder.crop, folder.pad, folder.channels) == (56, 56, 4, 1)
    with pytest.raises(SourceError, match="--channels"):
        STL10.fitted(64, 2, like=STL10)


def test_other_image_sizes_keep_the_registered_7x7_patch_grid():
    from gim_zoo import registry

    for name in ("gim-fmnist-resnet", "gim-stl10-resnet"):
        spec = registry.get(name)
        for size in (8, 28, 30, 32, 33, 64, 96, 224):
            encoder = {**spec.encoder, **spec.input_overrides(size, 3)}
            padded = encoder["image_size"] + 2 * encoder["pad"]
            grid = (padded - encoder["patch_size"]) // encoder["patch_stride"] + 1
            assert (encoder["image_size"], encoder["channels"], grid) == (size, 3, 7), (
                name, size)
        assert spec.input_overrides() == {}  # the registered input: no override at all


# --- one place: no dataset-name branches, no import cycle -------------------------------

def _compared_strings(path):
    """String constants compared with == / != / in inside a .py file."""
    found = []
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                for const in ast.walk(operand):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        found.append((const.value, node.lineno))
    return found


def test_no_dataset_name_branches_outside_the_sources_module(tmp_path):
    names = set(sources.BUILTINS) | {"digits"}
    (tmp_path / "branchy.py").write_text('if spec.dataset in ("x", "stl10"):\n    pass\n')
    assert ("stl10", 1) in _compared_strings(tmp_path / "branchy.py")  # the rule sees one
    offenders = []
    for folder in ("gim_zoo", "training", "export", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "sources.py":
                continue
            offenders += [f"{path.relative_to(ROOT)}:{line} compares with {value!r}"
                          for value, line in _compared_strings(path) if value in names]
    assert offenders == []


def _imports(path):
    names = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_modality_imports_nothing_of_the_data_package():
    assert not any(m.startswith("gim_zoo.data") for m in _imports(ROOT / "gim_zoo/modality.py"))


# --- folders ---------------------------------------------------------------------------

def test_labelled_train_test_folders_and_unlabelled_pretraining(tmp_path):
    write_images(tmp_path / "train", 12, classes=3)
    write_images(tmp_path / "test", 6, classes=3, seed=1)
    write_images(tmp_path / "unlabelled", 9, seed=2)
    source = fitted(f"folder/{tmp_path}")
    splits = source.check(("pretrain", "train", "test"), labels=("train", "test"))
    assert [splits[r].count for r in ("pretrain", "train", "test")] == [9, 12, 6]
    assert splits["pretrain"].labels is None
    assert sorted(np.bincount(splits["train"].labels)) == [4, 4, 4]
    assert splits["train"].class_names == ("class0", "class1", "class2")
    for path, label in zip(splits["test"].paths, splits["test"].labels):
        assert Path(path).parent.name == f"class{label}"  # labels follow the class names
    assert not source.holds_out()


def test_a_flat_folder_holds_out_a_fixed_fraction_in_a_fixed_order(tmp_path):
    write_images(tmp_path, 40)
    source = fitted(f"folder/{tmp_path}", test_fraction=0.25)
    assert source.holds_out()
    train, test = source.load("train"), source.load("test")
    assert (train.count, test.count, train.labels) == (30, 10, None)
    assert not set(train.paths) & set(test.paths)
    again = fitted(f"folder/{tmp_path}", test_fraction=0.25).load("test")
    assert again.paths == test.paths  # whatever the run: the same held-out files
    assert train.paths != sorted(train.paths)  # "the first N" is a sample, not one class
    assert source.load("train", max_examples=5).paths == train.paths[:5]


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "holds no image files"),
    (lambda d: (d / "notes.txt").write_text("hello"), "holds no image files"),
    (lambda d: (write_images(d, 3), (d / "bad.png").write_bytes(png(np.zeros((4, 4, 1)))[:30])),
     "bad.png: truncated PNG"),
    (lambda d: (write_images(d, 3), (d / "text.jpg").write_text("not an image")),
     "text.jpg: not a PNG, JPEG"),
    (lambda d: (write_images(d, 3), (d / "empty.png").write_bytes(b"")), "empty.png: empty file"),
    (lambda d: (write_images(d, 3), write_images(d / "sub", 2)), "both image files"),
])
def test_bad_folders_are_refused_naming_the_file(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(SourceError, match=message):
        fitted(f"folder/{tmp_path}").check(("pretrain", "test"))


def test_a_missing_folder_and_test_classes_unknown_to_train_are_refused(tmp_path):
    with pytest.raises(SourceError, match="no such folder"):
        fitted(f"folder/{tmp_path}/absent").load("train")
    write_images(tmp_path / "train", 4, classes=2)
    write_images(tmp_path / "test" / "zebra", 2)
    with pytest.raises(SourceError, match="classes that train/ lacks: zebra"):
        fitted(f"folder/{tmp_path}").load("test")


def test_a_cmyk_jpeg_cannot_be_converted_and_is_named(tmp_path):
    from PIL import Image

    write_images(tmp_path, 4)
    buffer = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 50, 100, 0)).save(buffer, "JPEG")
    (tmp_path / "print.jpg").write_bytes(buffer.getvalue())
    with pytest.raises(ImageFileError, match="print.jpg: a JPEG with 4 colour components"):
        image_channels(tmp_path / "print.jpg")
    with pytest.raises(SourceError, match="print.jpg"):
        fitted(f"folder/{tmp_path}").check(("train",))


def test_mixed_sizes_and_channels_are_resized_and_converted(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "gray.png").write_bytes(png(rng.integers(0, 256, (20, 20, 1))))
    (tmp_path / "rgb.png").write_bytes(png(rng.integers(0, 256, (40, 30, 3))))
    (tmp_path / "rgba.png").write_bytes(png(rng.integers(0, 256, (28, 28, 4))))
    (tmp_path / "gray_alpha.png").write_bytes(png(rng.integers(0, 256, (28, 28, 2))))
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(buffer, "JPEG")
    (tmp_path / "photo.jpg").write_bytes(buffer.getvalue())
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(buffer, "GIF")
    (tmp_path / "anim.gif").write_bytes(buffer.getvalue())
    for channels in (1, 3):
        source = fitted(f"folder/{tmp_path}", 32, channels, test_fraction=0.2)
        train = source.load("train")
        (images, labels), = eval_pipeline(train, source, batch_size=16).as_numpy_iterator()
        assert images.shape == (train.count, 32, 32, channels) and images.dtype == np.float32
        assert 0 <= images.min() and images.max() <= 255
        assert (labels == -1).all()
        batches = list(train_pipeline(train, source, batch_size=2, epochs=1).as_numpy_iterator())
        assert [x.shape for x, _ in batches] == [(2, 32, 32, channels)] * (train.count // 2)


def test_an_unchanged_png_decodes_to_its_own_pixels(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28, 1))
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "x.png").write_bytes(png(pixels))
    (tmp_path / "test" / "a" / "x.png").write_bytes(png(pixels))
    source = fitted(f"folder/{tmp_path}")
    (images, labels), = eval_pipeline(source.load("test"), source).as_numpy_iterator()
    np.testing.assert_array_equal(images[0], pixels.astype(np.float32))
    assert labels.tolist() == [0]


# --- streamed epochs: exact resume, corrupt files named ---------------------------------

def _batches(ds):
    return [(x.copy(), y.copy()) for x, y in ds.as_numpy_iterator()]


def test_a_folder_epoch_is_a_pure_function_of_seed_and_epoch(tmp_path):
    write_images(tmp_path, 20, classes=2)
    source = fitted(f"folder/{tmp_path}", test_fraction=0.2)
    train = source.load("train")
    whole = _batches(train_pipeline(train, source, batch_size=4, seed=3, epochs=3))
    resumed = _batches(train_pipeline(train, source, batch_size=4, seed=3, epochs=3,
                                      start_epoch=1))
    per_epoch = train.count // 4
    assert len(whole) == 3 * per_epoch and len(resumed) == 2 * per_epoch
    for (a, y), (b, z) in zip(whole[per_epoch:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(y, z)
    first, second = (np.concatenate([y for _, y in whole[e * per_epoch:(e + 1) * per_epoch]])
                     for e in (0, 1))
    assert not np.array_equal(first, second)  # every epoch its own order
    other = _batches(train_pipeline(train, source, batch_size=4, seed=4, epochs=1))
    assert not all(np.array_equal(a, b) for (a, _), (b, _) in zip(whole, other))


def test_in_memory_pipelines_are_unchanged_by_the_sources():
    """The built-in Fashion-MNIST path (resumed runs bit-identical): a source object, its
    name and the ArraySplit route give the same batches."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 40)
    by_name = _batches(epochs_pipeline(images, labels, "fashion_mnist", 8, seed=1, epochs=2))
    from gim_zoo.data.splits import ArraySplit

    by_split = _batches(train_pipeline(ArraySplit(images, labels), FASHION_MNIST, 8, seed=1,
                                       epochs=2))
    for (a, y), (b, z) in zip(by_name, by_split):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(y, z)


@pytest.mark.parametrize("position", ["middle", "last"])
def test_a_file_that_fails_to_decode_mid_epoch_is_named(tmp_path, position):
    paths = write_images(tmp_path, 24)
    source = fitted(f"folder/{tmp_path}", test_fraction=0.25)
    train = source.load("train")
    victim = train.paths[len(train.paths) // 2 if position == "middle" else -1]
    corrupt_body(victim)
    image_channels(victim)  # header and ending intact: only decoding finds it
    assert len(paths) == 24
    for ds in (train_pipeline(train, source, batch_size=2, epochs=2),
               eval_pipeline(train, source, batch_size=5)):
        with pytest.raises(CorruptImageError, match=Path(victim).name) as caught:
            with corrupt_images_named():
                for _ in ds:
                    pass
        assert str(victim) in str(caught.value) and "Traceback" not in str(caught.value)


# --- tfds sources on mock data ---------------------------------------------------------

@pytest.fixture
def mock_tfds():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def test_a_mocked_tfds_rgb_dataset_streams_resizes_and_resumes(mock_tfds, tmp_path):
    source = fitted("tfds/cifar10", 28, 1)  # 32x32 RGB -> the Fashion-MNIST model's input
    train = source.check(("train", "test"), str(tmp_path), labels=("train",))["train"]
    assert train.count == 24 and train.labels.shape == (24,) and train.num_classes == 10
    (images, labels), = eval_pipeline(train, source, batch_size=24).as_numpy_iterator()
    assert images.shape == (24, 28, 28, 1)
    np.testing.assert_array_equal(labels, train.labels)
    whole = _batches(train_pipeline(train, source, batch_size=4, seed=0, epochs=2))
    resumed = _batches(train_pipeline(train, source, batch_size=4, seed=0, epochs=2,
                                      start_epoch=1))
    assert len(whole) == 12 and len(resumed) == 6
    for (a, y), (b, z) in zip(whole[6:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(y, z)
    picked = train.subset(np.array([3, 7, 11]))
    np.testing.assert_array_equal(picked.labels, train.labels[[3, 7, 11]])
    (subset_images, _), = eval_pipeline(picked, source).as_numpy_iterator()
    np.testing.assert_array_equal(subset_images, images[[3, 7, 11]])


def test_stl10_calibration_images_come_as_the_model_takes_them(mock_tfds, tmp_path):
    from gim_zoo import registry

    spec = registry.get("gim-stl10-resnet")
    images = spec.modality.calibration_inputs(spec, str(tmp_path), count=5)
    assert images.shape == (5, 64, 64, 1) and images.dtype == np.float32


@pytest.mark.parametrize("text, message", [
    ("tfds/cifar_ten", "no dataset 'cifar_ten'; did you mean tfds/cifar10"),
    ("tfds/imdb_reviews", "no 'image' feature"),
])
def test_unknown_and_imageless_tfds_datasets_are_refused(mock_tfds, text, message):
    with pytest.raises(SourceError, match=message):
        fitted(text).load("train")


# --- bad sources leave no run directory ------------------------------------------------

def _train_config(out_dir, **kwargs):
    from tests.conftest import TINY_ENCODER  # noqa: F401  (the tiny sizes, as flags)
    from training.experiments.pretraining import TrainConfig

    return TrainConfig(model="gim-fmnist-resnet", out_dir=str(out_dir), stem_width=8,
                       widths="4,4,8", blocks="1,1,1", batch_size=4, epochs=1, verbose=0,
                       **kwargs)


def _cmyk_folder(d):
    from PIL import Image

    write_images(d, 8)
    buffer = io.BytesIO()
    Image.new("CMYK", (8, 8)).save(buffer, "JPEG")
    (d / "cmyk.jpg").write_bytes(buffer.getvalue())


BAD_TRAINING_SOURCES = {
    "a folder with no images": (lambda d: f"folder/{d}", "holds no image files"),
    "a corrupt image": (lambda d: (write_images(d, 8), (d / "x.png").write_bytes(b"\x89PNG"),
                                   f"folder/{d}")[-1], "x.png"),
    "channels it cannot convert": (lambda d: (_cmyk_folder(d), f"folder/{d}")[-1], "cmyk.jpg"),
    "an unknown tfds name": (lambda d: "tfds/no_such_dataset_here", "no dataset"),
    "a tfds dataset without images": (lambda d: "tfds/imdb_reviews", "no 'image' feature"),
    "another prefix": (lambda d: "hfds/beans", "unknown prefix"),
    "a supervised model on an unlabelled folder": (
        lambda d: (write_images(d, 8), f"folder/{d}")[-1], "has no labels"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAINING_SOURCES))
def test_bad_sources_are_refused_before_the_run_directory_exists(case, tmp_path,
                                                                  mock_tfds):
    from training.experiments.pretraining import train

    make, message = BAD_TRAINING_SOURCES[case]
    data = tmp_path / "data"
    data.mkdir()
    dataset = make(data)
    model = "supervised-fmnist-resnet" if "supervised" in case else "gim-fmnist-resnet"
    config = dataclasses.replace(_train_config(tmp_path / "run", dataset=dataset), model=model)
    with pytest.raises(ValueError, match=message):
        train(config)
    assert not (tmp_path / "run").exists()


def test_a_probe_of_an_unlabelled_source_is_refused_before_writing(tmp_path):
    import json

    import keras

    from training.experiments.image_probes import ProbeConfig, probe
    from gim_zoo import registry

    run = tmp_path / "run"
    run.mkdir()
    config = _train_config(run, dataset=f"folder/{tmp_path / 'flat'}")
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    keras.utils.set_random_seed(0)
    registry.get("gim-fmnist-resnet").build_encoder(**config.encoder_overrides()).save_weights(
        run / "encoder.weights.h5")
    write_images(tmp_path / "flat", 12)
    for dataset in ("", f"folder/{tmp_path / 'flat'}"):  # the run's own, or named
        with pytest.raises(SourceError, match="has no labels"):
            probe(ProbeConfig(run_dir=str(run), dataset=dataset, verbose=0))
        assert not (run / "probes").exists()
