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
    "image_folder: class subfolders of images under --data_dir (each image "
    "centre-cropped to a square, then resized). tfds: the TensorFlow Datasets "
    "dataset --tfds_name, prepared under --data_dir (offline unless --download)."
)


class UsageError(ValueError):
    """A bad combination of flags, reported before any training."""


def default_image_size(dataset):
    return 16 if dataset == "digits" else 32


def _stack(dataset):
    images, labels = [], []
    for example in dataset.as_numpy_iterator():
        images.append(example["image"])
        labels.append(example["label"])
    return np.stack(images), np.asarray(labels, "int32")


def load_dataset(
    name, data_dir, image_size, max_images, seed, tfds_name=None, download=False
):
    """Returns `(train_images, train_labels, test_images, test_labels)`.

    Images are uint8 NHWC with 3 channels, `image_size` pixels square. digits
    and image_folder hold out a fifth of the images, chosen by `seed`; tfds
    uses the dataset's own train and test splits. `max_images` caps the
    training images only.
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
        if not data_dir:
            raise UsageError("--dataset=image_folder needs --data_dir.")
        from keras_simclr import data

        images, labels = _stack(
            data.from_image_folder(
                os.path.expanduser(data_dir),
                (image_size, image_size),
                labelled=True,
                on_error="skip",
            )
        )
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
            f"--pretrained_dir must be a --model_dir written by "
            f"examples/pretrain.py; {path} does not exist."
        )
    with open(path) as f:
        return json.load(f)


def load_pretraining_dataset(pretraining_flags, max_images=None):
    """The dataset and split of a pretraining run, from its recorded flags."""
    image_size = pretraining_flags.get("image_size") or default_image_size(
        pretraining_flags["dataset"]
    )
    return load_dataset(
        pretraining_flags["dataset"],
        pretraining_flags.get("data_dir"),
        image_size,
        max_images,
        pretraining_flags.get("seed", 0),
        tfds_name=pretraining_flags.get("tfds_name"),
        download=False,
    )
