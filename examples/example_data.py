"""The datasets of the example scripts, loaded the same way by each of them.

`examples/pretrain.py` records its data flags in `flags.json`; fine-tuning,
distillation and export read them back, so every stage sees the same images
and the same held-out test split.
"""

import contextlib
import importlib.util
import logging
import os
import sys
import tempfile

import numpy as np

DATASETS = ["digits", "image_folder", "tfds"]

CROP_MODES = ["auto", "full_image", "resized"]

CROP_FROM_HELP = (
    "Where the random crops of pretraining come from. full_image: each image is "
    "decoded at its own size and its two views made in tf.data, per image, so "
    "a crop may come from anywhere in the image and only the crop is resized "
    "to --image_size; the evaluation images (kNN monitor, linear probe) are "
    "framed by the augmentation's evaluation transform. resized: each image is "
    "centre-cropped to a square and resized to --image_size when decoded, and "
    "the views are made in the training step. auto: full_image for "
    "--dataset=image_folder or tfds with --image_size above 64, resized "
    "otherwise (digits are 8x8 arrays: always resized)."
)

# Views larger than this use the full-image mode by default, as in
# keras_simclr.data.pretraining_dataset.
FULL_IMAGE_MIN_VIEW_SIZE = 64

# Decoded full-size images held by the shuffle buffer of a streamed tfds
# dataset (an ImageNet image takes about 0.4 MB).
TFDS_SHUFFLE_BUFFER = 1000

DATASET_HELP = (
    "digits: scikit-learn's bundled 8x8 handwritten digits (offline). "
    "image_folder: the images under --data_dir, streamed from disk: class "
    "subfolders give labels, a flat folder of images is unlabelled (see "
    "--crop_from for how the images are cropped). tfds: the TensorFlow Datasets "
    "dataset --tfds_name, prepared under --data_dir (offline unless --download)."
)


PRECISIONS = ["auto", "float32", "mixed_bfloat16", "mixed_float16"]

PRECISION_HELP = (
    "Keras dtype policy of the run. auto: mixed_bfloat16 where the hardware "
    "computes bfloat16 natively (x86 CPUs with AVX-512-bf16 or AMX, GPUs of "
    "compute capability 8.0+, TPUs), float32 elsewhere "
    "(keras_simclr.config.fast_precision). Losses stay in float32."
)


class UsageError(ValueError):
    """A bad combination of flags, reported before any training."""


VERBOSE_HELP = (
    "Keras fit verbosity (0, 1 or 2); 3 is 2 plus TensorFlow's warnings about "
    "tf.function retracing and JAX's backend notes, hidden otherwise. "
    "TensorFlow's and XLA's C++ log lines are hidden unless "
    "TF_CPP_MIN_LOG_LEVEL is set."
)


@contextlib.contextmanager
def quiet_logs():
    """Hides TensorFlow's and XLA's C++ log lines, such as the `failed call
    to cuInit` of a machine without a GPU; a TF_CPP_MIN_LOG_LEVEL of the
    user's own is kept, and then nothing is hidden.

    Import Keras (or keras_simclr) inside the block, before anything else
    imports TensorFlow or JAX: both read the variable once. Some of
    TensorFlow's libraries log while they load, before that setting applies
    (`Could not find cuda drivers`), so the block's own stderr is held back,
    and printed only if the block fails. TensorFlow, when installed, is
    imported at the end of the block on every backend (the scripts read
    their data with it), after keras_simclr has chosen its settings.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
            if importlib.util.find_spec("tensorflow") is not None:
                import tensorflow  # noqa: F401
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _RetracingFilter(logging.Filter):
    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def hide_noisy_logs(verbose):
    """Hides TensorFlow's retracing warnings and JAX's note that it found no
    TPU (`Unable to initialize backend 'tpu'`) unless `verbose` (the
    --verbose flag) is 3; returns the verbosity for Keras's `fit`, at most
    2."""
    if verbose < 3:
        logger = logging.getLogger("tensorflow")
        if not any(isinstance(f, _RetracingFilter) for f in logger.filters):
            logger.addFilter(_RetracingFilter())
        logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    return min(verbose, 2)


def run(main):
    """`absl.app.run(main)`, with an `app.UsageError` raised by `main`
    reported in one line: absl would print the script's whole help first."""
    from absl import app

    def main_with_short_usage_errors(argv):
        try:
            return main(argv)
        except app.UsageError as error:
            sys.stderr.write(
                f"FATAL Flags error: {error}\n"
                "Pass --helpshort or --helpfull to see help on flags.\n"
            )
            sys.exit(error.exitcode)

    app.run(main_with_short_usage_errors)


def check_flag(name, condition, requirement):
    """Registers an absl validator for flag `name`: a value for which
    `condition` is false is refused when the flags are parsed, before
    anything loads, with `--name must be <requirement>`. A flag left at
    None (its default) passes."""
    from absl import flags

    flags.register_validator(
        name,
        lambda value: value is None or condition(value),
        message=f"--{name} must be {requirement}",
    )


def define_precision_flag():
    """Defines --precision (`PRECISIONS`, default auto)."""
    from absl import flags

    flags.DEFINE_enum("precision", "auto", PRECISIONS, PRECISION_HELP)


def use_precision(precision):
    """Sets Keras's global dtype policy to `precision` (a
    `keras_simclr.config.Precision`, or a --precision value) and prints it as
    the run's first line; returns the `Precision`."""
    import keras

    import keras_simclr

    if isinstance(precision, str):
        precision = keras_simclr.config.resolve_precision(precision)
    keras.config.set_dtype_policy(precision.policy)
    print(f"precision={precision.policy}: {precision.reason}")
    return precision


class TrainingData:
    """What `examples/pretrain.py` trains and evaluates on.

    Attributes:
        train: `(images, labels)` NumPy arrays, or a `tf.data.Dataset` of
            unbatched examples streamed from disk (image folders, and tfds
            in the full-image mode), resized to the view size, or at their
            own size in the full-image mode.
        num_train: int, the training images.
        shuffle_buffer: int, the shuffle buffer the streamed `train` needs
            in `pretraining_dataset` (0 when the source shuffles itself).
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
        num_held_out, preview, shuffle_buffer=0,
    ):
        self.train = train
        self.num_train = num_train
        self.shuffle_buffer = shuffle_buffer
        self.num_classes = num_classes
        self.eval_train = eval_train
        self.eval_test = eval_test
        self.num_held_out = num_held_out
        self.preview = preview


def default_image_size(dataset):
    return 16 if dataset == "digits" else 32


def crop_mode(dataset, image_size, crop_from="auto"):
    """`"full_image"` or `"resized"`: how `examples/pretrain.py` crops."""
    if crop_from == "auto":
        if dataset != "digits" and image_size > FULL_IMAGE_MIN_VIEW_SIZE:
            return "full_image"
        return "resized"
    if crop_from == "full_image" and dataset == "digits":
        raise UsageError(
            "--crop_from=full_image reads images at their own size from "
            "--dataset=image_folder or tfds; the digits are 8x8 arrays. "
            "Received: --dataset=digits --crop_from=full_image"
        )
    if crop_from not in CROP_MODES:
        raise UsageError(
            f"--crop_from must be one of {CROP_MODES}. Received: {crop_from}"
        )
    return crop_from


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


def _decode(paths, labels, image_size, transform=None):
    """`(images, labels)` arrays of image files: resized to `image_size`, or,
    with a `transform`, decoded at their own size and framed by it."""
    from keras_simclr import data

    if transform is None:
        return _stack(
            data.from_image_files(
                paths, (image_size, image_size), labels=labels, on_error="skip"
            )
        )
    return _transformed(
        data.from_image_files(paths, labels=labels, on_error="skip"), transform
    )


def _transformed(dataset, transform):
    """`(images, labels)` uint8 arrays of a dataset of images at their own
    size, each through `transform` (in inference mode)."""
    from keras_simclr import data

    images, labels = [], []
    for batch in data.evaluation_dataset(
        dataset, 64, transform=transform
    ).as_numpy_iterator():
        batch_images, batch_labels = batch if isinstance(batch, tuple) else (batch, None)
        images.append(np.clip(np.round(batch_images), 0, 255).astype("uint8"))
        if batch_labels is not None:
            labels.append(batch_labels)
    if not images:
        raise UsageError(
            "None of the image files could be decoded (see the files named "
            "above)."
        )
    images = np.concatenate(images)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images, (np.concatenate(labels).astype("int32") if labels else None)


def load_training_data(
    name, data_dir, image_size, max_images, seed, eval_images, tfds_name=None,
    download=False, evaluation_transform=None,
):
    """The data of `examples/pretrain.py`, as a `TrainingData`.

    Digits and tfds are loaded into memory, as `load_dataset` gives them. An
    image folder is streamed from disk: only the images of the evaluation
    (at most `eval_images` of each split) and of the preview are decoded
    into memory, so a folder larger than the memory trains.

    With an `evaluation_transform` (the full-image mode), the training
    images of an image folder or tfds dataset are streamed at their own
    size, and the evaluation and preview images are decoded at their own
    size and framed by the transform (the augmentation layer, called with
    `training=False`).
    """
    if name == "tfds" and evaluation_transform is not None:
        return _load_tfds_full_images(
            tfds_name, data_dir, max_images, seed, eval_images, download,
            evaluation_transform,
        )
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
    full_image = evaluation_transform is not None
    train = data.from_image_files(
        train_paths, None if full_image else (image_size, image_size),
        labels=train_labels, on_error="skip", shuffle=True, seed=seed,
    )
    if class_names is None:
        preview, _ = _decode(train_paths[:8], None, image_size, evaluation_transform)
        return TrainingData(
            train, len(train_paths), None, None, None, 0, preview
        )
    eval_train = _decode(
        *_first(eval_images, train_paths, train_labels), image_size,
        evaluation_transform,
    )
    eval_test = _decode(
        *_first(eval_images, test_paths, test_labels), image_size,
        evaluation_transform,
    )
    return TrainingData(
        train, len(train_paths), len(class_names), eval_train, eval_test,
        len(test_paths), eval_train[0][:8],
    )


def _load_tfds_full_images(
    tfds_name, data_dir, max_images, seed, eval_images, download, transform
):
    """A tfds `TrainingData` in the full-image mode: the training split
    streamed at its own size (files in a seeded order, then a shuffle
    buffer), evaluation images framed by `transform`."""
    if not tfds_name:
        raise UsageError("--dataset=tfds needs --tfds_name, e.g. cifar10.")
    from keras_simclr import data

    data_dir = os.path.expanduser(data_dir) if data_dir else None

    def split(which, shuffle=False):
        return data.from_tfds(
            tfds_name, split=which, data_dir=data_dir, download=download,
            with_labels=True, shuffle_files=shuffle, seed=seed if shuffle else None,
        )

    train = split("train", shuffle=True)
    num_train = int(train.cardinality())
    if max_images:
        train = train.take(max_images)
        num_train = min(num_train, max_images)
    eval_train = _transformed(split("train").take(eval_images), transform)
    test = split("test")
    num_held_out = int(test.cardinality())
    eval_test = _transformed(test.take(eval_images), transform)
    import tensorflow_datasets as tfds

    features = tfds.builder(tfds_name, data_dir=data_dir).info.features
    num_classes = int(features["label"].num_classes)
    return TrainingData(
        train, num_train, num_classes, eval_train, eval_test, num_held_out,
        eval_train[0][:8], shuffle_buffer=min(num_train, TFDS_SHUFFLE_BUFFER),
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
