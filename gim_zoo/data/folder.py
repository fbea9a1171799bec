"""Folders of image files: which files, which labels, which split (no TensorFlow here).

Layout (Keras' image_dataset_from_directory and timm's folder reader, plus splits):

    PATH/CLASS/*.png        labelled: one subfolder per class (classes in sorted order)
    PATH/*.png              unlabelled (a flat folder)
    PATH/train/, PATH/test/ the splits, each laid out as above; PATH/unlabelled/ (optional)
                            is what self-supervised training reads instead of train/

Without a PATH/test folder a fixed fraction of the files (chosen with a fixed seed, the
same for every run) is the test split. Every split's files are kept in one fixed shuffled
order (a pure function of the file list), so "the first N examples" is a sample of every
class rather than the first class.

Every file's first and last bytes are read when a folder is listed (not its pixels): an
empty, truncated or non-image file, or one whose channels cannot be converted, is refused
by name before training starts. A file that only fails to decode later is named by the
input pipeline (gim_zoo.data.pipelines).
"""

import functools
import os
import struct

import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
SPLIT_FOLDERS = ("train", "test", "unlabelled")
ORDER_SEED = 1  # the fixed shuffled order of a split's files


class ImageFileError(ValueError):
    """An image file that cannot be used; the message names it."""


def _png_channels(head, tail, path):
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise ImageFileError(f"{path}: not a whole PNG file (no IHDR header)")
    if b"IEND" not in tail:
        raise ImageFileError(f"{path}: truncated PNG file (no IEND chunk at its end)")
    color_type = head[25]
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(color_type)
    if channels is None:
        raise ImageFileError(f"{path}: PNG colour type {color_type} is not a valid one")
    return channels


def _jpeg_channels(f, path):
    """Components of the first start-of-frame marker (1 grayscale, 3 YCbCr, 4 CMYK)."""
    f.seek(2)
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            raise ImageFileError(f"{path}: not a whole JPEG file (no frame header)")
        kind = marker[1]
        if kind == 0xFF:  # fill byte
            f.seek(-1, os.SEEK_CUR)
            continue
        if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:
            continue
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            raise ImageFileError(f"{path}: truncated JPEG file")
        (length,) = struct.unpack(">H", length_bytes)
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            frame = f.read(6)
            if len(frame) < 6:
                raise ImageFileError(f"{path}: truncated JPEG file")
            return frame[5]
        f.seek(length - 2, os.SEEK_CUR)


def image_channels(path):
    """The channel count stored in an image file's header, after checking that the file
    starts and ends as a PNG / JPEG / GIF / BMP file does. ImageFileError names the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 16))
            tail = f.read(16)
            if size == 0:
                raise ImageFileError(f"{path}: empty file, not an image")
            if head.startswith(b"\x89PNG\r\n\x1a\n"):
                return _png_channels(head, tail, path)
            if head.startswith(b"\xff\xd8\xff"):
                channels = _jpeg_channels(f, path)
                if channels not in (1, 3):
                    raise ImageFileError(
                        f"{path}: a JPEG with {channels} colour components (CMYK or other), "
                        "which cannot be converted to grayscale or RGB here; save it as an "
                        "RGB JPEG or PNG")
                return channels
            if head[:6] in (b"GIF87a", b"GIF89a"):
                if not tail.endswith(b";"):
                    raise ImageFileError(f"{path}: truncated GIF file")
                return 3
            if head.startswith(b"BM"):
                return 3
    except OSError as e:
        raise ImageFileError(f"{path}: cannot be read ({e.strerror or e})") from e
    raise ImageFileError(f"{path}: not a PNG, JPEG, GIF or BMP file (by its contents), "
                         "though named like one; delete or replace it")


def _image_files(folder):
    """Image files under `folder` (recursively), sorted."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.lower().endswith(EXTENSIONS) and not f.startswith(".")]
    return found


def list_split(folder):
    """(files, labels or None, class names) of one split folder: class subfolders, or
    image files directly in it (unlabelled). Refuses a folder mixing both, or with none."""
    if not os.path.isdir(folder):
        raise ImageFileError(f"{folder} is not a folder" + (
            "" if not os.path.exists(folder) else " (a file)"))
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    loose = [e.path for e in entries if e.is_file() and e.name.lower().endswith(EXTENSIONS)
             and not e.name.startswith(".")]
    classes = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    if loose and classes:
        raise ImageFileError(
            f"{folder} holds both image files ({os.path.basename(loose[0])}, ...) and "
            f"subfolders ({classes[0].name}, ...): put every image in a class subfolder "
            "(labelled) or none in subfolders (unlabelled)")
    if loose:
        return loose, None, ()
    files, labels, names = [], [], []
    for c in classes:
        members = _image_files(c.path)
        if members:
            labels += [len(names)] * len(members)
            names.append(c.name)
            files += members
    if not files:
        raise ImageFileError(f"{folder} holds no image files ({', '.join(EXTENSIONS)}), "
                             "directly or in class subfolders")
    return files, np.asarray(labels, np.int64), tuple(names)


def _fixed_order(files, labels):
    order = np.random.default_rng(ORDER_SEED).permutation(len(files))
    return [files[i] for i in order], None if labels is None else labels[order]


def scan(files):
    """Check every file's header and ending (image_channels); the first bad one raises."""
    for path in files:
        image_channels(path)


@functools.lru_cache(maxsize=8)
def read_layout(path, test_fraction, holdout_seed):
    """{role: (files, labels or None, class names)} of a folder source, every file's
    header checked. Roles: pretrain, train, test (see the module's docstring)."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise ImageFileError(f"folder/{path}: no such folder" if not os.path.exists(path)
                             else f"folder/{path} is a file, not a folder of images")
    present = {name: os.path.join(path, name) for name in SPLIT_FOLDERS
               if os.path.isdir(os.path.join(path, name))}
    if "test" in present and "train" not in present:
        raise ImageFileError(f"{path} has a test/ folder but no train/ folder next to it")
    train = _listed(present.get("train", path))
    if "test" in present:
        test = _listed(present["test"])
        if test[1] is not None and train[1] is not None:
            test = _relabel(test, train[2], present["test"])
    else:
        train, test = _hold_out(train, test_fraction, holdout_seed, path)
    pretrain = _listed(present["unlabelled"]) if "unlabelled" in present else train
    layout = {"pretrain": pretrain, "train": train, "test": test}
    return {role: (*_fixed_order(files, labels), names)
            for role, (files, labels, names) in layout.items()}


def _listed(folder):
    split = list_split(folder)
    scan(split[0])
    return split


def _relabel(test, classes, folder):
    """The test split's labels as indices of the train split's classes."""
    files, labels, names = test
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise ImageFileError(f"{folder} has classes that train/ lacks: {', '.join(unknown)}")
    index = {name: i for i, name in enumerate(classes)}
    mapping = np.array([index[n] for n in names], np.int64)
    return files, mapping[labels], classes


def _hold_out(split, fraction, seed, path):
    files, labels, names = split
    n_test = max(1, int(round(len(files) * fraction)))
    if n_test >= len(files):
        raise ImageFileError(
            f"{path}: {len(files)} image file(s) cannot be split into train and a "
            f"{fraction:g} test fraction; add images or a test/ folder")
    chosen = np.zeros(len(files), bool)
    chosen[np.random.default_rng(seed).permutation(len(files))[:n_test]] = True

    def part(mask):
        return ([f for f, m in zip(files, mask) if m],
                None if labels is None else labels[mask], names)

    return part(~chosen), part(chosen)
