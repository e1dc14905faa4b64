"""The datasets of the example scripts, loaded the same way by each of them.

`examples/pretrain.py` records its data flags in `flags.json`; fine-tuning,
distillation and export read them back, so every stage sees the same images
and the same held-out test split.
"""

import os

import numpy as np

DATASETS = ["digits", "image_folder", "tfds"]

DATASET_HELP = (
    "digits: scikit-learn's bundled 8x8 handwritten digits (offline). "
    "image_folder: the images under --data_dir, streamed from disk: class "
    "subfolders give labels, a flat folder of images is unlabelled (each image "
    "centre-cropped to a square, then resized). tfds: the TensorFlow Datasets "
    "dataset --tfds_name, prepared under --data_dir (offline unless --download)."
)


class UsageError(ValueError):
    """A bad combination of flags, reported before any training."""


class TrainingData:
    """What `examples/pretrain.py` trains and evaluates on.

    Attributes:
        train: `(images, labels)` NumPy arrays, or a `tf.data.Dataset` of
            unbatched examples streamed from disk (image folders), shuffled
            anew on each pass.
        num_train: int, the training images.
        num_classes: int, or None for unlabelled data.
        eval_train: `(images, labels)` arrays, the training images that the
            kNN monitor and the linear probe fit on; None without labels.
        eval_test: `(images, labels)` arrays, the held-out images they are
            scored on; None without labels.
        num_held_out: int, the held-out images of the split (of which
            `eval_test` holds at most `eval_images`).
        preview: a few training images (uint8 array) to draw views of.
    """

    def __init__(
        self, train, num_train, num_classes, eval_train, eval_test,
        num_held_out, preview,
    ):
        self.train = train
        self.num_train = num_train
        self.num_classes = num_classes
        self.eval_train = eval_train
        self.eval_test = eval_test
        self.num_held_out = num_held_out
        self.preview = preview


def default_image_size(dataset):
    return 16 if dataset == "digits" else 32


def check_data_flags(dataset, data_dir, download=False):
    """Refuses a `--data_dir` that would be ignored or does not exist."""
    if data_dir is None:
        if dataset == "image_folder":
            raise UsageError("--dataset=image_folder needs --data_dir.")
        return
    if dataset == "digits":
        raise UsageError(
            "--data_dir is read only with --dataset=image_folder (or tfds); "
            "--dataset=digits, the default, would ignore it and train on the "
            "bundled digits. Pass --dataset=image_folder to train on the "
            f"images in it. Received: --dataset=digits --data_dir={data_dir}"
        )
    path = os.path.expanduser(data_dir)
    if dataset == "image_folder" and not os.path.isdir(path):
        raise UsageError(
            "--data_dir must be an existing folder of images (flat, or one "
            f"subfolder per class). Received: --data_dir={data_dir}"
        )
    if dataset == "tfds" and not download and not os.path.isdir(path):
        raise UsageError(
            "--data_dir must be an existing folder of prepared TensorFlow "
            "Datasets data (or pass --download to prepare the dataset there). "
            f"Received: --data_dir={data_dir}"
        )


def _stack(dataset):
    """`(images, labels)` arrays of a dataset; labels None without them."""
    images, labels = [], []
    for example in dataset.as_numpy_iterator():
        images.append(example["image"])
        if "label" in example:
            labels.append(example["label"])
    if not images:
        raise UsageError(
            "None of the image files could be decoded (see the files named "
            "above)."
        )
    return np.stack(images), (np.asarray(labels, "int32") if labels else None)


def split_image_folder(data_dir, seed):
    """The files of an image folder, split as the example scripts use them.

    Class subfolders: the files in an order permuted by `seed`, a fifth held
    out for evaluation. A flat folder (no labels): every file trains, in that
    order, and nothing is held out.

    Returns:
        `(train_paths, train_labels, test_paths, test_labels, class_names)`;
        the labels and class names are None for a flat folder.
    """
    from keras_simclr import data

    try:
        paths, labels, class_names = data.list_image_files(
            os.path.expanduser(data_dir)
        )
    except ValueError as error:
        raise UsageError(f"--data_dir: {error}") from None
    order = np.random.default_rng(seed).permutation(len(paths))
    paths = [paths[i] for i in order]
    if labels is None:
        return paths, None, [], None, None
    labels = [labels[i] for i in order]
    num_test = len(paths) // 5
    if not num_test:
        raise UsageError(
            "--data_dir needs at least 5 images to hold a fifth of them out "
            f"for evaluation; it has {len(paths)}. Received: --data_dir={data_dir}"
        )
    return (
        paths[num_test:], labels[num_test:], paths[:num_test], labels[:num_test],
        class_names,
    )


def _first(count, paths, labels):
    """The first `count` paths and labels (all for None); labels may be None."""
    if not count:
        return paths, labels
    return paths[:count], None if labels is None else labels[:count]


def _decode(paths, labels, image_size):
    from keras_simclr import data

    return _stack(
        data.from_image_files(
            paths, (image_size, image_size), labels=labels, on_error="skip"
        )
    )


def load_training_data(
    name, data_dir, image_size, max_images, seed, eval_images, tfds_name=None,
    download=False,
):
    """The data of `examples/pretrain.py`, as a `TrainingData`.

    Digits and tfds are loaded into memory, as `load_dataset` gives them. An
    image folder is streamed from disk: only the images of the evaluation
    (at most `eval_images` of each split) and of the preview are decoded
    into memory, so a folder larger than the memory trains.
    """
    if name != "image_folder":
        train_images, train_labels, test_images, test_labels = load_dataset(
            name, data_dir, image_size, max_images, seed, tfds_name=tfds_name,
            download=download,
        )
        return TrainingData(
            train=(train_images, train_labels),
            num_train=len(train_images),
            num_classes=int(max(train_labels.max(), test_labels.max()) + 1),
            eval_train=(train_images[:eval_images], train_labels[:eval_images]),
            eval_test=(test_images[:eval_images], test_labels[:eval_images]),
            num_held_out=len(test_images),
            preview=train_images[:8],
        )
    from keras_simclr import data

    train_paths, train_labels, test_paths, test_labels, class_names = (
        split_image_folder(data_dir, seed)
    )
    train_paths, train_labels = _first(max_images, train_paths, train_labels)
    train = data.from_image_files(
        train_paths, (image_size, image_size), labels=train_labels,
        on_error="skip", shuffle=True, seed=seed,
    )
    if class_names is None:
        preview, _ = _decode(train_paths[:8], None, image_size)
        return TrainingData(
            train, len(train_paths), None, None, None, 0, preview
        )
    eval_train = _decode(*_first(eval_images, train_paths, train_labels), image_size)
    eval_test = _decode(*_first(eval_images, test_paths, test_labels), image_size)
    return TrainingData(
        train, len(train_paths), len(class_names), eval_train, eval_test,
        len(test_paths), eval_train[0][:8],
    )


def load_dataset(
    name, data_dir, image_size, max_images, seed, tfds_name=None, download=False
):
    """Returns `(train_images, train_labels, test_images, test_labels)`.

    Images are uint8 NHWC with 3 channels, `image_size` pixels square, all
    in memory. digits and image_folder hold out a fifth of the images, chosen
    by `seed` (for image_folder, as `split_image_folder`); tfds uses the
    dataset's own train and test splits. `max_images` caps the training
    images only. An image folder without class subfolders has no labels
    (both are None) and nothing held out: its test images are a sample of
    the training images.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = (digits.images * (255.0 / 16.0)).astype("float32")
        images = np.repeat(images[..., None], 3, axis=-1)
        labels = digits.target.astype("int32")
        if images.shape[1] != image_size:
            import keras

            images = keras.ops.convert_to_numpy(
                keras.ops.image.resize(images, (image_size, image_size))
            )
        images = np.clip(np.round(images), 0, 255).astype("uint8")
    elif name == "image_folder":
        check_data_flags(name, data_dir)
        train_paths, train_labels, test_paths, test_labels, _ = (
            split_image_folder(data_dir, seed)
        )
        train_paths, train_labels = _first(max_images, train_paths, train_labels)
        train_images, train_labels = _decode(train_paths, train_labels, image_size)
        if test_paths:
            test_images, test_labels = _decode(test_paths, test_labels, image_size)
        else:
            # Nothing is held out of unlabelled images; checks that need
            # images alone (the export's) get some of the training ones.
            test_images = train_images[: max(1, len(train_images) // 5)]
        return train_images, train_labels, test_images, test_labels
    elif name == "tfds":
        if not tfds_name:
            raise UsageError("--dataset=tfds needs --tfds_name, e.g. cifar10.")
        from keras_simclr import data

        def split(which):
            return _stack(
                data.from_tfds(
                    tfds_name,
                    split=which,
                    data_dir=os.path.expanduser(data_dir) if data_dir else None,
                    download=download,
                    image_size=(image_size, image_size),
                    with_labels=True,
                )
            )

        train_images, train_labels = split("train")
        test_images, test_labels = split("test")
        if train_images.shape[-1] == 1:
            train_images = np.repeat(train_images, 3, axis=-1)
            test_images = np.repeat(test_images, 3, axis=-1)
        order = np.random.default_rng(seed).permutation(len(train_images))
        train_images, train_labels = train_images[order], train_labels[order]
        if max_images:
            train_images = train_images[:max_images]
            train_labels = train_labels[:max_images]
        return train_images, train_labels, test_images, test_labels
    else:
        raise UsageError(f"--dataset must be one of {DATASETS}. Received: {name}")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order], labels[order]
    num_test = len(images) // 5
    train_images, train_labels = images[num_test:], labels[num_test:]
    if max_images:
        train_images, train_labels = train_images[:max_images], train_labels[:max_images]
    return train_images, train_labels, images[:num_test], labels[:num_test]


def load_pretraining_flags(model_dir):
    """The flags `examples/pretrain.py` recorded in `model_dir`."""
    import json

    path = os.path.join(model_dir, "flags.json")
    if not os.path.exists(path):
        raise UsageError(
            f"--model_dir must be a run directory written by "
            f"examples/pretrain.py; {path} does not exist. Received: "
            f"--model_dir={model_dir}"
        )
    with open(path) as f:
        return json.load(f)


def load_pretraining_dataset(pretraining_flags, max_images=None):
    """The dataset and split of a pretraining run, from its recorded flags.

    A `UsageError` here concerns flags of `examples/pretrain.py`, not of the
    script that calls this; its message says so.
    """
    image_size = pretraining_flags.get("image_size") or default_image_size(
        pretraining_flags["dataset"]
    )
    recorded = ", ".join(
        f"{name}={pretraining_flags[name]}"
        for name in ("dataset", "data_dir", "tfds_name")
        if pretraining_flags.get(name) is not None
    )
    data_dir = pretraining_flags.get("data_dir")
    if pretraining_flags["dataset"] == "image_folder" and not (
        data_dir and os.path.isdir(os.path.expanduser(data_dir))
    ):
        raise UsageError(
            "The images of the pretraining run are gone: its flags.json "
            f"records {recorded}, which is not a folder any more."
        )
    try:
        return load_dataset(
            pretraining_flags["dataset"],
            pretraining_flags.get("data_dir"),
            image_size,
            max_images,
            pretraining_flags.get("seed", 0),
            tfds_name=pretraining_flags.get("tfds_name"),
            download=False,
        )
    except UsageError as error:
        raise UsageError(
            "The images of the pretraining run cannot be loaded (its flags.json "
            f"records {recorded}): {error}"
        ) from None
