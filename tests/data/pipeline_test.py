import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_simclr.data import evaluation_dataset
from keras_simclr.data import from_arrays
from keras_simclr.data import from_image_folder
from keras_simclr.data import pretraining_dataset
from keras_simclr.layers import RandomResizedCrop
from keras_simclr.layers import SimCLRAugmentation
from tests.data.image_files import write_image
from tests.models.simclr_pretrainer_test import IMAGE_SIZE
from tests.models.simclr_pretrainer_test import make_pretrainer


def arrays(n=20, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("uint8")
    return images, np.arange(n) % 4


def index_of(images, image):
    return int(np.flatnonzero((images == image).all(axis=(1, 2, 3)))[0])


def batches_of(dataset):
    return list(dataset.as_numpy_iterator())


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)


def test_raw_batches_with_labels():
    images, labels = arrays()
    dataset = pretraining_dataset(from_arrays(images, labels), 8, seed=0)
    assert dataset.element_spec == (
        tf.TensorSpec((8, IMAGE_SIZE, IMAGE_SIZE, 3), tf.uint8),
        tf.TensorSpec((8,), tf.int32),
    )
    got = batches_of(dataset)
    assert len(got) == 2  # 20 images: the last 4 are dropped
    seen = np.concatenate([x for x, _ in got])
    # Shuffled, and every image kept with its own label.
    order = [index_of(images, image) for image in seen]
    assert order != sorted(order)
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), labels[order])


def test_same_seed_same_batches_every_epoch_other_seed_other_order():
    images, labels = arrays()

    def epochs(seed):
        dataset = pretraining_dataset(from_arrays(images, labels), 4, seed=seed)
        return [batches_of(dataset) for _ in range(2)]

    first, second, other = epochs(3), epochs(3), epochs(4)
    for a, b in zip(first, second):
        assert_same_batches(a, b)
    assert not np.array_equal(first[0][0][1], first[1][0][1])
    assert not all(
        np.array_equal(a[1], b[1]) for a, b in zip(first[0], other[0])
    )


def test_views_in_tf_data_are_repeatable_with_seeds():
    images, _ = arrays(8)

    def views():
        augmentation = SimCLRAugmentation(IMAGE_SIZE, preset="cifar", seed=11)
        dataset = pretraining_dataset(
            from_arrays(images), 4, augmentation=augmentation, seed=5
        )
        return batches_of(dataset)

    first, second = views(), views()
    assert set(first[0]) == {"view_a", "view_b"}
    assert first[0]["view_a"].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert not np.array_equal(first[0]["view_a"], first[0]["view_b"])
    assert_same_batches(first, second)


def test_views_in_parallel_keep_the_labels_with_their_images():
    images, labels = arrays()
    # An "augmentation" that only offsets, so each view still shows its image.
    dataset = pretraining_dataset(
        from_arrays(images, labels),
        5,
        augmentation=lambda x: tf.cast(x, tf.float32) + 1.0,
        deterministic=False,
    )
    for views, batch_labels in batches_of(dataset):
        for view, label in zip(views["view_b"], batch_labels):
            assert labels[index_of(images, view - 1)] == label


def test_options():
    images, labels = arrays(10)
    source = from_arrays(images, labels)
    unlabelled = pretraining_dataset(
        source, 4, with_labels=False, shuffle_buffer=0, drop_remainder=False
    )
    got = batches_of(unlabelled)
    assert [len(b) for b in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(got), images)
    repeated = pretraining_dataset(source, 4, repeat=True, cache=True, seed=0)
    assert len(batches_of(repeated.take(7))) == 7
    # Tuples (image, label) and bare images are accepted too.
    as_tuples = tf.data.Dataset.from_tensor_slices((images, labels))
    assert len(batches_of(pretraining_dataset(as_tuples, 5))) == 2
    bare = tf.data.Dataset.from_tensor_slices(images)
    assert batches_of(pretraining_dataset(bare, 5))[0].shape[0] == 5


def test_file_cache(tmp_path):
    images, labels = arrays(8)
    dataset = pretraining_dataset(
        from_arrays(images, labels), 4, cache=str(tmp_path / "cache"), seed=0
    )
    assert len(batches_of(dataset)) == 2
    assert len(batches_of(dataset)) == 2
    assert any(tmp_path.iterdir())


def test_evaluation_dataset_keeps_order_and_every_example():
    images, labels = arrays(10)
    dataset = evaluation_dataset(from_arrays(images, labels), 4)
    got = batches_of(dataset)
    assert [len(x) for x, _ in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), images)
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), labels)
    images_only = batches_of(
        evaluation_dataset(from_arrays(images, labels), 10, with_labels=False)
    )
    np.testing.assert_array_equal(images_only[0], images)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"shuffle_buffer": -1}, "shuffle_buffer"),
        ({"cache": 1}, "cache"),
        ({"augmentation": "simclr"}, "augmentation"),
        ({"seed": "0"}, "seed"),
        ({"deterministic": "yes"}, "deterministic"),
    ],
)
def test_invalid_arguments(arguments, message):
    images, labels = arrays(4)
    arguments = {"batch_size": 2, **arguments}
    with pytest.raises(ValueError, match=message):
        pretraining_dataset(from_arrays(images, labels), **arguments)


def test_invalid_datasets():
    images, labels = arrays(4)
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        pretraining_dataset(images, 2)
    batched = from_arrays(images, labels).batch(2)
    with pytest.raises(ValueError, match="unbatch"):
        evaluation_dataset(batched, 2)
    float_labels = tf.data.Dataset.from_tensor_slices(
        (images, labels.astype("float32"))
    )
    with pytest.raises(ValueError, match="integer class id"):
        pretraining_dataset(float_labels, 2)
    with pytest.raises(ValueError, match="'image'"):
        pretraining_dataset(tf.data.Dataset.from_tensor_slices({"x": images}), 2)


@pytest.mark.parametrize("views_in_tf_data", [False, True])
def test_batches_feed_simclr_pretrainer_fit(views_in_tf_data):
    images, labels = arrays(16)
    # Raw uint8 batches reach the pretrainer as they are (without its own
    # augmentation here, which keeps the compiled step small); views made in
    # tf.data by a light augmentation layer arrive as a dict.
    augmentation = None
    if views_in_tf_data:
        augmentation = RandomResizedCrop(IMAGE_SIZE, IMAGE_SIZE, seed=0)
    dataset = pretraining_dataset(
        from_arrays(images, labels), 8, augmentation=augmentation, seed=0
    )
    # Raw batches: the images themselves as both views, said explicitly.
    model = make_pretrainer(
        augmentation=None if views_in_tf_data else keras.layers.Identity(),
        num_classes=4,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(
        dataset, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0
    ).history
    assert np.isfinite(history["contrastive_loss"][0])
    assert np.isfinite(history["probe_loss"][0])


@pytest.mark.parametrize("views_in_tf_data", [False, True])
def test_image_folder_with_labels_false_trains_a_pretrainer_without_probe(
    tmp_path, views_in_tf_data
):
    # Class subfolders give labels; a pretrainer without a probe has no use
    # for them, so the pipeline must yield images alone.
    images, labels = arrays(16, seed=3)
    for i, (image, label) in enumerate(zip(images, labels)):
        os.makedirs(tmp_path / f"class_{label}", exist_ok=True)
        write_image(tmp_path / f"class_{label}" / f"{i:02d}.png", image)
    folder = from_image_folder(tmp_path, IMAGE_SIZE)
    assert folder.class_names == ["class_0", "class_1", "class_2", "class_3"]
    raw = pretraining_dataset(folder, 8, with_labels=False, seed=0)
    assert raw.element_spec == tf.TensorSpec(
        (8, IMAGE_SIZE, IMAGE_SIZE, 3), tf.uint8
    )
    # Every image of the folder, once per epoch, pixel for pixel (PNG).
    seen = np.concatenate(batches_of(raw))
    assert sorted(index_of(images, image) for image in seen) == list(range(16))

    augmentation = None
    if views_in_tf_data:
        augmentation = RandomResizedCrop(IMAGE_SIZE, IMAGE_SIZE, seed=0)
    batches = pretraining_dataset(
        folder, 8, augmentation=augmentation, with_labels=False, seed=0
    )
    model = make_pretrainer(
        augmentation=None if views_in_tf_data else keras.layers.Identity()
    )
    assert model.probe is None
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    history = model.fit(batches, epochs=2, shuffle=False, verbose=0).history
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4
    assert np.all(np.isfinite(history["contrastive_loss"]))
    assert "probe_loss" not in history
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after))

    # With the labels passed on, the same pretrainer refuses them.
    labelled = pretraining_dataset(folder, 8, seed=0)
    refusing = make_pretrainer(augmentation=None)
    refusing.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="with_labels|linear probe"):
        refusing.fit(labelled, epochs=1, shuffle=False, verbose=0)


# === Processes that train together agree on every batch ===


def id_images(count, size=4):
    """Image `i` filled with the value `i`."""
    values = np.arange(count, dtype="uint8")
    return np.broadcast_to(values[:, None, None, None], (count, size, size, 3)).copy()


def epochs_of_ids(dataset, epochs=3, key=None):
    passes = []
    for _ in range(epochs):
        ids = []
        for batch in dataset.as_numpy_iterator():
            images = batch[key] if key else batch
            ids.extend(np.asarray(images)[:, 0, 0, 0].astype(int).tolist())
        passes.append(ids)
    return passes


def assert_new_permutation_each_epoch(passes, count):
    for ids in passes:
        assert sorted(ids) == list(range(count))
    assert ids != sorted(ids)
    assert len({tuple(ids) for ids in passes}) == len(passes)


def test_seeded_shuffle_does_not_depend_on_the_global_seed():
    # Processes seeded differently (keras.utils.set_random_seed(seed +
    # rank)) that build the same pipeline must shuffle alike, or each takes
    # its slice of another "global" batch. tf.data's own shuffle mixes the
    # global seed in.
    def orders(global_seed):
        keras.utils.set_random_seed(global_seed)
        dataset = pretraining_dataset(
            from_arrays(id_images(24)), 8, with_labels=False, seed=3
        )
        return epochs_of_ids(dataset)

    first = orders(1)
    assert orders(2) == first
    assert_new_permutation_each_epoch(first, 24)
    keras.utils.set_random_seed(1)
    other = pretraining_dataset(
        from_arrays(id_images(24)), 8, with_labels=False, seed=4
    )
    assert epochs_of_ids(other) != first


def test_seeded_file_order_does_not_depend_on_the_global_seed(tmp_path):
    for i in range(12):
        write_image(tmp_path / f"{i:02d}.png", np.full((4, 4, 3), i, "uint8"))

    def orders(global_seed):
        keras.utils.set_random_seed(global_seed)
        folder = from_image_folder(tmp_path, shuffle=True, seed=7)
        batches = folder.map(lambda example: example["image"]).batch(12)
        return epochs_of_ids(batches)

    first = orders(1)
    assert orders(2) == first
    assert_new_permutation_each_epoch(first, 12)


def slow_view(image):
    """The image, after a random delay: a map that may yield out of order
    does."""
    import time

    delay = tf.py_function(
        lambda seconds: time.sleep(float(seconds)) or 0.0,
        [tf.random.uniform([], 0.0, 0.004)],
        tf.float32,
    )
    delay.set_shape([])
    return tf.cast(image, "float32") + 0.0 * delay


def test_processes_that_share_batches_keep_the_order_of_parallel_views(
    monkeypatch,
):
    # Each process runs the pipeline and takes its slice of every batch: a
    # per-image map that yields out of order (deterministic=False) would
    # put an image in another batch in each process. Views are still made
    # in parallel, and yielded in order.
    from keras_simclr import distribute

    monkeypatch.setattr(distribute, "processes_share_the_batches", lambda: True)
    dataset = pretraining_dataset(
        from_arrays(id_images(64)),
        8,
        augmentation=slow_view,
        augment_per_image=True,
        deterministic=False,
        shuffle_buffer=0,
    )
    for ids in epochs_of_ids(dataset, 2, key="view_a"):
        assert ids == list(range(64))


def test_tf_config_workers_share_batches(monkeypatch):
    from keras_simclr import distribute

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert not distribute.processes_share_the_batches()
    monkeypatch.setenv(
        "TF_CONFIG",
        '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, '
        '"task": {"type": "worker", "index": 0}}',
    )
    # MultiWorkerMirroredStrategy shards a dataset by element: its workers
    # must agree on every batch (on TensorFlow; elsewhere TF_CONFIG is
    # nobody's).
    expected = keras.backend.backend() == "tensorflow"
    assert distribute.processes_share_the_batches() is expected
