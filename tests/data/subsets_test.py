import os

import numpy as np
import pytest

from keras_simclr.data import filter_by_file_names
from keras_simclr.data import from_image_folder
from keras_simclr.data import read_subset_file
from tests.data.image_files import solid
from tests.data.image_files import write_image


def test_read_subset_file(tmp_path):
    path = tmp_path / "1percent.txt"
    path.write_text(
        "n01440764_10026.JPEG\n"
        "  n01440764_10027.JPEG  \n"
        "\n"
        "# a comment\n"
        "n01443537_2.JPEG\n"
        "n01440764_10026.JPEG\n"
    )
    assert read_subset_file(path) == [
        "n01440764_10026.JPEG",
        "n01440764_10027.JPEG",
        "n01443537_2.JPEG",
    ]


def test_read_subset_file_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="lists no file name"):
        read_subset_file(empty)
    paths = tmp_path / "paths.txt"
    paths.write_text("n01440764_1.JPEG\ntrain/n01440764/n01440764_2.JPEG\n")
    with pytest.raises(ValueError, match="line 2"):
        read_subset_file(paths)
    with pytest.raises(FileNotFoundError):
        read_subset_file(tmp_path / "missing.txt")


@pytest.fixture
def imagenet_like_folder(tmp_path):
    root = tmp_path / "train"
    for synset in ("n01440764", "n01443537"):
        os.makedirs(root / synset)
        for i in range(3):
            write_image(root / synset / f"{synset}_{i}.JPEG", solid(4, 4, (i, 0, 0)))
    subset = tmp_path / "1percent.txt"
    subset.write_text(
        "n01440764_2.JPEG\nn01443537_0.JPEG\nn01443537_9.JPEG\nn02000000_1.JPEG\n"
    )
    return root, subset


def test_image_folder_subset_from_a_subset_file(imagenet_like_folder):
    root, subset = imagenet_like_folder
    with pytest.warns(UserWarning, match="2 of the 4 file names"):
        dataset = from_image_folder(root, 4, subset=subset)
    assert dataset.class_names == ["n01440764", "n01443537"]
    got = list(dataset.as_numpy_iterator())
    assert [os.path.basename(e["file_path"]) for e in got] == [
        b"n01440764_2.JPEG", b"n01443537_0.JPEG"
    ]
    assert [int(e["label"]) for e in got] == [0, 1]


def test_filter_by_file_names_counts_missing_names_each_pass(
    imagenet_like_folder, capfd
):
    root, subset = imagenet_like_folder
    dataset = filter_by_file_names(from_image_folder(root, 4), subset)
    for _ in range(2):
        names = [
            os.path.basename(e["file_path"]) for e in dataset.as_numpy_iterator()
        ]
        assert names == [b"n01440764_2.JPEG", b"n01443537_0.JPEG"]
    printed = capfd.readouterr().err
    assert printed.count("2 of the 4 listed file names were not found") == 2
    complete = filter_by_file_names(
        from_image_folder(root, 4), ["n01443537_1.JPEG"], key="file_path"
    )
    assert len(list(complete.as_numpy_iterator())) == 1
    assert "not found" not in capfd.readouterr().err


def test_filter_by_file_names_errors():
    import tensorflow as tf

    images = tf.data.Dataset.from_tensor_slices({"image": np.zeros((2, 2, 2, 3))})
    with pytest.raises(ValueError, match="no 'file_name' or 'file_path'"):
        filter_by_file_names(images, ["a.png"])
    with pytest.raises(ValueError, match="no feature 'name'"):
        filter_by_file_names(images, ["a.png"], key="name")
    with pytest.raises(ValueError, match="lists no file name"):
        filter_by_file_names(images, [])
