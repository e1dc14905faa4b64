"""A `tf.data.Dataset` of a TensorFlow Datasets (tfds) image dataset."""

import os
import re

import tensorflow as tf

from keras_simclr import _validation
from keras_simclr.data._images import INTERPOLATIONS
from keras_simclr.data._images import resize_image
from keras_simclr.data.subsets import as_file_names
from keras_simclr.data.subsets import filter_by_file_names


def _import_tfds():
    try:
        import tensorflow_datasets
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError(
            "from_tfds() needs TensorFlow Datasets: `pip install "
            "tensorflow-datasets` (or `pip install keras-simclr[tensorflow]`)."
        ) from error
    return tensorflow_datasets


def _split_names(split):
    """The split names in a tfds split string, e.g. `train[:10%]+unlabelled`."""
    return [re.sub(r"\[.*\]$", "", part.strip()) for part in split.split("+")]


def _not_prepared_message(builder, name, split):
    root = os.fspath(builder.data_dir_root)
    message = (
        f"The tfds dataset {name!r} (version {builder.version}) is not "
        f"prepared: nothing found in {os.fspath(builder.data_dir)}. "
        f"from_tfds(..., download=False) reads prepared data only, so it works "
        f"offline. Prepare it once where the network is reachable, with "
        f"keras_simclr.data.from_tfds({name!r}, split={split!r}, "
        f"data_dir={root!r}, download=True) or `tfds build {name} "
        f"--data_dir={root}`, or pass the `data_dir` where it was prepared "
        f"(the default is $TFDS_DATA_DIR or ~/tensorflow_datasets)."
    )
    instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if instructions:
        manual_dir = os.path.join(root, "downloads", "manual")
        message += (
            f" This dataset needs files downloaded by hand into {manual_dir} "
            f"first: {' '.join(instructions.split())}"
        )
    return message


def from_tfds(
    name,
    split="train",
    data_dir=None,
    download=False,
    image_size=None,
    crop_to_aspect_ratio=True,
    interpolation="bilinear",
    with_labels="auto",
    subset=None,
    shuffle_files=False,
    seed=None,
    image_key="image",
    label_key="label",
):
    """A dataset of images (and labels) from TensorFlow Datasets.

    Reads a prepared tfds dataset such as `"cifar10"`, `"stl10"`,
    `"imagenet2012"` or `"imagenet2012_subset/1pct"` (the SimCLR v2 1%
    labelled subset, built from the same list as
    `imagenet_subsets/1percent.txt`). With `download=False`, the default,
    nothing is fetched: the dataset must have been prepared into `data_dir`
    before, and a `FileNotFoundError` says where it looked and how to
    prepare it. `download=True` downloads and prepares it first if needed
    (ImageNet needs its archives placed by hand; tfds says where).

    Labels: with `with_labels="auto"`, examples carry the `label_key`
    feature when the dataset has one, except for splits named
    `unlabelled...` (stl10's 100,000 unlabelled images, whose tfds label is
    -1), which come without labels. A split string that mixes labelled and
    unlabelled parts (`"train+unlabelled"`) also comes without labels; pass
    `with_labels=True` to keep them, -1 marking the unlabelled images.

    Images come as tfds decodes them (uint8), at their own size unless
    `image_size` is given. Datasets of one image size (CIFAR-10, STL-10)
    batch as they are. Datasets of varying sizes (ImageNet) are best left
    at their own size for pretraining on views larger than 64 pixels:
    `pretraining_dataset` with an `augmentation` then takes each random
    resized crop from the whole image (per image, before batching), and
    `evaluation_dataset` with a `transform` frames each image for
    evaluation. With `image_size`, each image is instead resized as in
    `from_image_folder` (central crop to the target aspect ratio, then
    antialiased resize, with `crop_to_aspect_ratio=True`), which batches
    without per-image augmentation.

    Args:
        name: tfds name, with config and version where needed (e.g.
            `"imagenet2012_subset/10pct"`).
        split: tfds split string, e.g. `"train"`, `"test"`,
            `"train[:10%]"`, `"unlabelled"`. Defaults to `"train"`.
        data_dir: folder of prepared tfds data; None for tfds's default
            (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        download: bool, whether to download and prepare the dataset when
            it is not prepared. Defaults to `False`.
        image_size: None (each image at its own size, the default) or an
            int or `(height, width)`.
        crop_to_aspect_ratio: bool, as in `from_image_folder`.
        interpolation: resize method, as in `from_image_folder`.
        with_labels: `"auto"`, `True` or `False` (see above).
        subset: None, or the path of a subset file (see
            `read_subset_file`) or an iterable of file names: only examples
            whose `file_name` feature is listed are kept (`imagenet2012` has
            one). They are filtered before the images are decoded, but every
            record is still read on each pass, so cache the result; at the
            end of each pass, the count of listed names that were not found
            is printed to stderr.
        shuffle_files: bool, whether tfds reads its files in a random order
            (useful for large sharded datasets). Defaults to `False`.
        seed: int or None, the seed of `shuffle_files`.
        image_key: the image feature. Defaults to `"image"`.
        label_key: the label feature. Defaults to `"label"`.

    Returns:
        A `tf.data.Dataset` of dicts: `"image"` (uint8, `(height, width,
        channels)`), `"label"` (int32 scalar, when labelled) and
        `"file_name"` (string, when the dataset has that feature).

    Raises:
        FileNotFoundError: if the dataset is not prepared and
            `download=False`.
        ValueError: if an argument is invalid, the dataset is unknown
            (tfds's `DatasetNotFoundError`), or it has no such image or
            label feature.
        ImportError: if tensorflow-datasets is not installed.

    Example:

    ```python
    train = keras_simclr.data.from_tfds("cifar10", split="train")
    unlabelled = keras_simclr.data.from_tfds("stl10", split="unlabelled")
    # Full images, two random crops of each resized to 224:
    imagenet = keras_simclr.data.from_tfds(
        "imagenet2012", shuffle_files=True, seed=0
    )
    batches = keras_simclr.data.pretraining_dataset(
        imagenet,
        batch_size=256,
        augmentation=keras_simclr.layers.SimCLRAugmentation(224),
        shuffle_buffer=1000,
    )
    ```
    """
    tfds = _import_tfds()
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a tfds dataset name. Received: name={name!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(
            f"`split` must be a tfds split string such as 'train'. "
            f"Received: split={split!r}"
        )
    download = _validation.check_bool(download, "download")
    size = _validation.check_image_size(image_size, allow_none=True)
    crop_to_aspect_ratio = _validation.check_bool(
        crop_to_aspect_ratio, "crop_to_aspect_ratio"
    )
    interpolation = _validation.check_choice(
        interpolation, "interpolation", INTERPOLATIONS
    )
    with_labels = _validation.check_choice(
        with_labels, "with_labels", ("auto", True, False)
    )
    shuffle_files = _validation.check_bool(shuffle_files, "shuffle_files")
    seed = _validation.check_seed(seed)
    file_names = None if subset is None else as_file_names(subset)

    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    feature_names = sorted(features.keys())
    if image_key not in features or not isinstance(
        features[image_key], tfds.features.Image
    ):
        raise ValueError(
            f"The tfds dataset {name!r} has no image feature {image_key!r}; "
            f"its features: {feature_names}. Received: image_key={image_key!r}"
        )
    has_labels = label_key in features
    if with_labels is True and not has_labels:
        raise ValueError(
            f"`with_labels=True`, but the tfds dataset {name!r} has no label "
            f"feature {label_key!r}; its features: {feature_names}. "
            f"Received: label_key={label_key!r}"
        )
    if with_labels == "auto":
        unlabelled_split = any(
            part.startswith("unlabel") for part in _split_names(split)
        )
        with_labels = has_labels and not unlabelled_split
    if file_names is not None and "file_name" not in features:
        raise ValueError(
            f"`subset` filters on the `file_name` feature, which the tfds "
            f"dataset {name!r} does not have; its features: {feature_names}."
        )

    if download:
        builder.download_and_prepare()
    read_config = tfds.ReadConfig(shuffle_seed=seed) if shuffle_files else None
    decoders = None
    if file_names is not None:
        # Filtering before decoding: only the listed images are decoded.
        decoders = {image_key: tfds.decode.SkipDecoding()}
    try:
        dataset = builder.as_dataset(
            split=split,
            shuffle_files=shuffle_files,
            read_config=read_config,
            decoders=decoders,
        )
    except AssertionError as error:
        if "could not find data" not in str(error):
            raise
        raise FileNotFoundError(_not_prepared_message(builder, name, split)) from error

    if file_names is not None:
        dataset = filter_by_file_names(dataset, file_names, key="file_name")
    keep_file_name = "file_name" in dataset.element_spec
    image_feature = features[image_key]

    def to_example(record):
        image = record[image_key]
        if file_names is not None:
            image = image_feature.decode_example(image)
        if size is not None:
            image = resize_image(image, size, crop_to_aspect_ratio, interpolation)
        example = {"image": image}
        if with_labels:
            example["label"] = tf.cast(record[label_key], tf.int32)
        if keep_file_name:
            example["file_name"] = record["file_name"]
        return example

    return dataset.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
