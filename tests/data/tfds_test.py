import numpy as np
import pytest
import tensorflow as tf

tfds = pytest.importorskip("tensorflow_datasets")

from keras_simclr.data import from_tfds  # noqa: E402
from keras_simclr.data import pretraining_dataset  # noqa: E402


def test_cifar10_images_and_labels():
    with tfds.testing.mock_data(num_examples=6):
        dataset = from_tfds("cifar10", split="train")
        got = list(dataset.as_numpy_iterator())
    assert dataset.element_spec["image"] == tf.TensorSpec((32, 32, 3), tf.uint8)
    assert dataset.element_spec["label"] == tf.TensorSpec((), tf.int32)
    assert len(got) == 6
    assert all(0 <= e["label"] < 10 for e in got)


def test_unlabelled_split_has_no_labels():
    with tfds.testing.mock_data(num_examples=3):
        unlabelled = from_tfds("stl10", split="unlabelled")
        mixed = from_tfds("stl10", split="train+unlabelled")
        kept = from_tfds("stl10", split="train+unlabelled", with_labels=True)
        dropped = from_tfds("cifar10", split="test", with_labels=False)
    assert set(unlabelled.element_spec) == {"image"}
    assert set(mixed.element_spec) == {"image"}
    assert set(kept.element_spec) == {"image", "label"}
    assert set(dropped.element_spec) == {"image"}


def test_image_size_resizes_images_of_varying_size():
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(ValueError, match="image_size"):
            pretraining_dataset(from_tfds("imagenet2012"), batch_size=2)
        dataset = from_tfds("imagenet2012", image_size=16)
        got = list(dataset.as_numpy_iterator())
    assert dataset.element_spec["image"].shape == (16, 16, 3)
    assert set(dataset.element_spec) == {"image", "label", "file_name"}
    assert len(got) == 4


def test_subset_filters_on_file_name_and_reports_missing(capfd):
    with tfds.testing.mock_data(num_examples=5):
        names = [
            e["file_name"].decode()
            for e in from_tfds("imagenet2012", image_size=8).as_numpy_iterator()
        ]
        subset = [names[3], names[1], "n01440764_10026.JPEG"]
        dataset = from_tfds("imagenet2012", image_size=8, subset=subset)
        got = list(dataset.as_numpy_iterator())
    assert [e["file_name"].decode() for e in got] == [names[1], names[3]]
    assert got[0]["image"].shape == (8, 8, 3)
    assert "1 of the 3 listed file names were not found" in capfd.readouterr().err


def test_subset_needs_a_file_name_feature():
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(ValueError, match="file_name"):
            from_tfds("cifar10", subset=["a.png"])


def test_download_switch_under_mock_data():
    with tfds.testing.mock_data(num_examples=2):
        dataset = from_tfds("cifar10", split="test", download=True)
        assert len(list(dataset.as_numpy_iterator())) == 2


def test_unprepared_dataset_says_where_it_looked_and_how_to_prepare(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        from_tfds("cifar10", data_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message
    assert "download=True" in message and "tfds build cifar10" in message


def test_unprepared_manual_dataset_names_the_manual_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="downloads/manual.*ILSVRC2012"):
        from_tfds("imagenet2012", data_dir=tmp_path)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"image_key": "picture"}, "no image feature 'picture'"),
        ({"label_key": "class", "with_labels": True}, "no label feature 'class'"),
        ({"image_size": -1}, "image_size"),
        ({"with_labels": "yes"}, "with_labels"),
        ({"split": ""}, "split"),
    ],
)
def test_invalid_arguments(arguments, message):
    with tfds.testing.mock_data(num_examples=1):
        with pytest.raises(ValueError, match=message):
            from_tfds("cifar10", **arguments)


def test_shuffled_files_are_read():
    with tfds.testing.mock_data(num_examples=3):
        dataset = from_tfds("cifar10", shuffle_files=True, seed=1)
        labels = sorted(int(e["label"]) for e in dataset.as_numpy_iterator())
    assert len(labels) == 3
    assert np.all(np.array(labels) >= 0)
