import os
import warnings

import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.data import from_image_files
from keras_simclr.data import from_image_folder
from keras_simclr.data import list_image_files
from tests.data.image_files import solid
from tests.data.image_files import write_image

RED, GREEN, BLUE = (250, 0, 0), (0, 250, 0), (0, 0, 250)


def examples(dataset):
    return list(dataset.as_numpy_iterator())


@pytest.fixture
def class_folder(tmp_path):
    """Two classes, given out of order, in every format; all of one colour
    per class, so the decoded pixels can be checked exactly."""
    for name, color, files in (
        ("dog", BLUE, ("1.png", "2.jpg", "3.GIF")),
        ("cat", RED, ("a.bmp", "b.jpeg")),
    ):
        os.makedirs(tmp_path / name)
        for file in files:
            write_image(tmp_path / name / file, solid(6, 10, color))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def test_class_subfolders_give_sorted_class_ids(class_folder):
    dataset = from_image_folder(class_folder, 4)
    assert dataset.class_names == ["cat", "dog"]
    assert dataset.cardinality().numpy() == 5
    assert dataset.element_spec["image"].shape == (4, 4, 3)
    assert dataset.element_spec["image"].dtype == tf.uint8
    got = examples(dataset)
    names = [os.path.relpath(e["file_path"].decode(), class_folder) for e in got]
    assert names == [
        os.path.join("cat", "a.bmp"),
        os.path.join("cat", "b.jpeg"),
        os.path.join("dog", "1.png"),
        os.path.join("dog", "2.jpg"),
        os.path.join("dog", "3.GIF"),
    ]
    assert [int(e["label"]) for e in got] == [0, 0, 1, 1, 1]
    assert names == [os.path.relpath(p, class_folder) for p in dataset.file_paths]
    for example in got:
        color = RED if example["label"] == 0 else BLUE
        # JPEG is lossy, so a tolerance; the others are exact.
        np.testing.assert_allclose(
            example["image"], solid(4, 4, color), atol=6
        )


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", solid(5, 5, GREEN))
    dataset = from_image_folder(tmp_path, (3, 2))
    assert dataset.class_names is None
    assert "label" not in dataset.element_spec
    got = examples(dataset)
    assert len(got) == 3
    assert got[0]["image"].shape == (3, 2, 3)


def test_labelled_false_reads_subfolders_without_labels(class_folder):
    dataset = from_image_folder(class_folder, 4, labelled=False)
    assert "label" not in dataset.element_spec
    assert len(examples(dataset)) == 5


def test_loose_images_beside_class_folders_are_left_out_with_a_warning(
    class_folder,
):
    write_image(class_folder / "stray.png", solid(4, 4, GREEN))
    with pytest.warns(UserWarning, match="stray.png"):
        dataset = from_image_folder(class_folder, 4)
    assert len(dataset.file_paths) == 5


def test_central_crop_or_stretch_to_the_target_aspect_ratio(tmp_path):
    # 8 x 16: red, green, blue vertical bands of 4, 8 and 4 columns.
    image = np.concatenate(
        [solid(8, 4, RED), solid(8, 8, GREEN), solid(8, 4, BLUE)], axis=1
    )
    write_image(tmp_path / "wide.png", image)
    cropped = examples(from_image_folder(tmp_path, 8))[0]["image"]
    np.testing.assert_array_equal(cropped, solid(8, 8, GREEN))
    stretched = examples(
        from_image_folder(tmp_path, 8, crop_to_aspect_ratio=False)
    )[0]["image"]
    assert stretched[:, 0, 0].min() > 200 and stretched[:, -1, 2].min() > 200


def test_grayscale(class_folder):
    dataset = from_image_folder(class_folder, 4, channels=1)
    assert examples(dataset)[0]["image"].shape == (4, 4, 1)


@pytest.fixture
def folder_with_corrupt_file(tmp_path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png", solid(4, 4, GREEN))
    # A truncated PNG between good ones, and a text file named .jpg at the end.
    good = (tmp_path / "0.png").read_bytes()
    (tmp_path / "1b.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "zz.jpg").write_text("not a jpeg")
    return tmp_path


def test_corrupt_file_raises_naming_the_file(folder_with_corrupt_file):
    dataset = from_image_folder(folder_with_corrupt_file, 4, on_error="raise")
    with pytest.raises(tf.errors.InvalidArgumentError, match="1b.png"):
        examples(dataset)


def test_corrupt_files_are_skipped_and_reported(folder_with_corrupt_file, capfd):
    dataset = from_image_folder(folder_with_corrupt_file, 4, on_error="skip")
    got = examples(dataset)
    assert [os.path.basename(e["file_path"]) for e in got] == [
        b"0.png", b"1.png", b"2.png", b"3.png"
    ]
    printed = capfd.readouterr().err
    assert "skipped" in printed
    assert "1b.png" in printed and "zz.jpg" in printed


def test_validate_raises_value_error_listing_corrupt_files(
    folder_with_corrupt_file,
):
    message = r"2 of the 6 image files(.|\n)*1b.png(.|\n)*zz.jpg"
    with pytest.raises(ValueError, match=message):
        from_image_folder(folder_with_corrupt_file, 4, validate=True)


def test_validate_with_skip_leaves_corrupt_files_out(folder_with_corrupt_file):
    with pytest.warns(UserWarning, match="1b.png"):
        dataset = from_image_folder(
            folder_with_corrupt_file, 4, validate=True, on_error="skip"
        )
    assert dataset.cardinality().numpy() == 4
    assert len(examples(dataset)) == 4


def test_folder_without_images_raises_naming_it(tmp_path):
    with pytest.raises(ValueError, match=f"No image files.*{tmp_path.name}"):
        from_image_folder(tmp_path, 4)
    (tmp_path / "readme.txt").write_text("no images here")
    os.makedirs(tmp_path / "empty_class")
    with pytest.raises(ValueError, match=f"No image files.*{tmp_path.name}"):
        from_image_folder(tmp_path, 4, labelled=True)
    with pytest.raises(ValueError, match="existing folder"):
        from_image_folder(tmp_path / "missing", 4)


def test_labelled_true_needs_subfolders(tmp_path):
    write_image(tmp_path / "0.png", solid(4, 4, GREEN))
    with pytest.raises(ValueError, match="subfolder"):
        from_image_folder(tmp_path, 4, labelled=True)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"image_size": 0}, "image_size"),
        ({"on_error": "ignore"}, "on_error"),
        ({"labelled": "yes"}, "labelled"),
        ({"channels": 4}, "channels"),
        ({"interpolation": "cubic"}, "interpolation"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_invalid_arguments(class_folder, arguments, message):
    arguments = {"image_size": 4, **arguments}
    with pytest.raises(ValueError, match=message):
        from_image_folder(class_folder, **arguments)


def test_shuffle_gives_a_new_order_each_pass_repeatable_by_seed(tmp_path):
    for i in range(10):
        write_image(tmp_path / f"{i}.png", solid(2, 2, (i, i, i)))

    def orders(dataset):
        return [
            [int(e["image"][0, 0, 0]) for e in dataset.as_numpy_iterator()]
            for _ in range(2)
        ]

    first = orders(from_image_folder(tmp_path, 2, shuffle=True, seed=7))
    second = orders(from_image_folder(tmp_path, 2, shuffle=True, seed=7))
    other = orders(from_image_folder(tmp_path, 2, shuffle=True, seed=8))
    assert first == second
    assert first[0] != first[1]
    assert first != other
    assert sorted(first[0]) == list(range(10))


def test_subset_keeps_listed_files_and_counts_missing_ones(class_folder):
    with pytest.warns(UserWarning, match="1 of the 3 file names"):
        dataset = from_image_folder(
            class_folder, 4, subset=["a.bmp", "2.jpg", "n01440764_10026.JPEG"]
        )
    got = examples(dataset)
    assert [os.path.basename(e["file_path"]) for e in got] == [b"a.bmp", b"2.jpg"]
    assert [int(e["label"]) for e in got] == [0, 1]
    with pytest.raises(ValueError, match="None of the 1 file names"):
        from_image_folder(class_folder, 4, subset=["nothing.JPEG"])


def test_list_image_files(class_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths, labels, class_names = list_image_files(class_folder)
    assert class_names == ["cat", "dog"]
    assert labels == [0, 0, 1, 1, 1]
    assert [os.path.basename(p) for p in paths] == [
        "a.bmp", "b.jpeg", "1.png", "2.jpg", "3.GIF"
    ]


def test_image_files_keep_the_given_order_and_labels(class_folder):
    paths = [
        class_folder / "dog" / "2.jpg",
        str(class_folder / "cat" / "a.bmp"),
        class_folder / "dog" / "1.png",
    ]
    dataset = from_image_files(paths, (3, 5), labels=[1, 0, 1])
    assert dataset.class_names is None
    assert dataset.file_paths == [str(p) for p in paths]
    assert dataset.cardinality().numpy() == 3
    got = examples(dataset)
    assert [e["file_path"].decode() for e in got] == [str(p) for p in paths]
    assert [int(e["label"]) for e in got] == [1, 0, 1]
    for example, color in zip(got, (BLUE, RED, BLUE)):
        np.testing.assert_allclose(example["image"], solid(3, 5, color), atol=6)
    unlabelled = from_image_files(paths, 4)
    assert "label" not in unlabelled.element_spec


def test_image_files_are_read_when_iterated_not_when_listed(tmp_path):
    # Streamed from disk: each pass reads the files again, so a file
    # rewritten between passes shows its new pixels, and a listed file
    # written only after the dataset was made is read.
    paths = [tmp_path / "0.png", tmp_path / "1.png"]
    write_image(paths[0], solid(4, 4, RED))
    files = from_image_files(paths, 4)
    write_image(paths[1], solid(4, 4, GREEN))
    folder = from_image_folder(tmp_path, 4)
    for source in (files, folder):
        write_image(paths[0], solid(4, 4, RED))
        first = examples(source)
        write_image(paths[0], solid(4, 4, BLUE))
        second = examples(source)
        np.testing.assert_array_equal(first[0]["image"], solid(4, 4, RED))
        np.testing.assert_array_equal(first[1]["image"], solid(4, 4, GREEN))
        np.testing.assert_array_equal(second[0]["image"], solid(4, 4, BLUE))


def test_missing_image_files_are_named_or_skipped(tmp_path, capfd):
    write_image(tmp_path / "0.png", solid(4, 4, GREEN))
    paths = [tmp_path / "0.png", tmp_path / "gone.png"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="gone.png"):
        examples(from_image_files(paths, 4))
    got = examples(from_image_files(paths, 4, labels=[3, 4], on_error="skip"))
    assert [int(e["label"]) for e in got] == [3]
    assert "gone.png" in capfd.readouterr().err
    with pytest.raises(ValueError, match=r"1 of the 2 image files given"):
        from_image_files(paths, 4, validate=True)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"file_paths": "photos"}, r"not one path.*Received: file_paths='photos'"),
        ({"file_paths": []}, r"non-empty list.*Received: file_paths=\[\]"),
        ({"file_paths": [1, 2]}, r"Received: file_paths=\[1, 2\]"),
        ({"file_paths": 3}, r"Received: file_paths=3"),
        ({"labels": [0]}, "one entry per image"),
        ({"labels": [0, -1]}, "labels"),
        ({"image_size": (2,)}, "image_size"),
        ({"on_error": "ignore"}, "Received: on_error='ignore'"),
    ],
)
def test_image_files_invalid_arguments(class_folder, arguments, message):
    arguments = {
        "file_paths": [class_folder / "cat" / "a.bmp", class_folder / "dog" / "1.png"],
        "image_size": 4,
        **arguments,
    }
    with pytest.raises(ValueError, match=message):
        from_image_files(**arguments)


def test_invalid_arguments_are_reported_before_the_folder_is_read(tmp_path):
    with pytest.raises(ValueError, match="Received: on_error='ignore'"):
        from_image_folder(tmp_path / "missing", 4, on_error="ignore")
