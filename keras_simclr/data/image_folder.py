"""A `tf.data.Dataset` of the images in a folder."""

import os
import warnings

import tensorflow as tf

from keras_simclr import _validation
from keras_simclr import distribute
from keras_simclr.data._images import IMAGE_EXTENSIONS
from keras_simclr.data._images import INTERPOLATIONS
from keras_simclr.data._images import decode_image
from keras_simclr.data._images import print_if
from keras_simclr.data._images import resize_image
from keras_simclr.data.arrays import validate_labels
from keras_simclr.data.pipeline import permutations
from keras_simclr.data.subsets import select_file_names

_DECODE_FAILURE = (
    "could not be read or decoded as an image (corrupt, truncated, empty, or "
    "not JPEG, PNG, BMP or GIF)"
)


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _walk_images(directory, follow_links):
    """Paths of the images under `directory`, recursively, in sorted order."""
    paths = []
    for root, folders, files in os.walk(directory, followlinks=follow_links):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        paths.extend(os.path.join(root, f) for f in sorted(files) if _is_image(f))
    return paths


def list_image_files(directory, labelled="auto", follow_links=False):
    """Lists the images of a folder, as `from_image_folder` reads them.

    Args:
        directory: the folder.
        labelled: `"auto"`, `True` or `False`, as in `from_image_folder`.
        follow_links: bool, whether to descend into symbolic links to
            folders.

    Returns:
        A tuple `(file_paths, labels, class_names)`: paths sorted by class
        and then by path, integer labels (None when unlabelled), and the
        sorted class folder names (None when unlabelled).

    Raises:
        ValueError: if `directory` is not a folder, or holds no image, or
            `labelled=True` and it has no subfolder.
    """
    labelled = _validation.check_choice(labelled, "labelled", ("auto", True, False))
    directory = os.path.expanduser(os.fspath(directory))
    if not os.path.isdir(directory):
        raise ValueError(
            f"`directory` must be an existing folder. Received: "
            f"directory={directory!r}"
        )
    entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    class_names = [
        entry.name
        for entry in entries
        if not entry.name.startswith(".")
        and entry.is_dir(follow_symlinks=follow_links)
    ]
    loose = [
        entry.path
        for entry in entries
        if entry.is_file() and _is_image(entry.name)
    ]
    extensions = "/".join(IMAGE_EXTENSIONS)
    if labelled == "auto":
        labelled = any(
            _walk_images(os.path.join(directory, name), follow_links)
            for name in class_names
        )
    if labelled is False:
        paths = _walk_images(directory, follow_links)
        if not paths:
            raise ValueError(
                f"No image files ({extensions}) found in {directory!r} or its "
                "subfolders."
            )
        return paths, None, None
    if not class_names:
        raise ValueError(
            f"`labelled=True` needs one subfolder of images per class in "
            f"{directory!r}, which has no subfolder."
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_paths = _walk_images(os.path.join(directory, name), follow_links)
        paths.extend(class_paths)
        labels.extend([label] * len(class_paths))
    if not paths:
        raise ValueError(
            f"No image files ({extensions}) found in the class subfolders of "
            f"{directory!r} ({len(class_names)} subfolders: "
            f"{class_names[:5]}{'...' if len(class_names) > 5 else ''})."
        )
    if loose:
        warnings.warn(
            f"{len(loose)} image files directly in {directory!r} belong to no "
            "class subfolder and are left out, e.g. "
            f"{os.path.basename(loose[0])!r}. Pass labelled=False to read "
            "every image without labels.",
            stacklevel=3,
        )
    return paths, labels, class_names


def _undecodable(paths, channels, num_parallel_calls):
    """The paths among `paths` that cannot be read and decoded."""
    positions = tf.data.Dataset.range(len(paths))
    all_paths = tf.constant(paths)

    def try_decode(position):
        image = decode_image(tf.io.read_file(all_paths[position]), channels)
        # A data dependency: a decode reached only by a control dependency
        # is pruned from the dataset function.
        return position, tf.shape(image)

    decoded = positions.map(
        try_decode, num_parallel_calls=num_parallel_calls, deterministic=False
    ).ignore_errors()
    good = {int(position) for position, _ in decoded.as_numpy_iterator()}
    return [path for i, path in enumerate(paths) if i not in good]


def _check_decoding_options(
    on_error, validate, crop_to_aspect_ratio, interpolation, channels, shuffle,
    seed,
):
    """Raises `ValueError` for an invalid option shared by the file sources."""
    _validation.check_choice(on_error, "on_error", ("raise", "skip"))
    _validation.check_bool(validate, "validate")
    _validation.check_bool(crop_to_aspect_ratio, "crop_to_aspect_ratio")
    _validation.check_choice(interpolation, "interpolation", INTERPOLATIONS)
    _validation.check_choice(channels, "channels", (1, 3))
    _validation.check_bool(shuffle, "shuffle")
    _validation.check_seed(seed)


def from_image_folder(
    directory,
    image_size=None,
    labelled="auto",
    on_error="raise",
    validate=False,
    crop_to_aspect_ratio=True,
    interpolation="bilinear",
    channels=3,
    shuffle=False,
    seed=None,
    subset=None,
    follow_links=False,
):
    """A dataset of the images in a folder, decoded (and resized).

    Two layouts:

    - class subfolders (`directory/<class>/.../<image>`): labelled examples;
      the class ids are the positions of the folder names in sorted order;
    - images directly in `directory` (or in subfolders, with
      `labelled=False`): unlabelled examples.

    Files ending in .jpg, .jpeg, .png, .bmp or .gif (any case) are read;
    hidden files and folders are not. Files are visited in sorted order
    (class by class), or, with `shuffle`, in a new random order on each pass:
    a permutation of the whole file list, which for a large dataset mixes
    classes far better than a shuffle buffer of decoded images can.

    The images are streamed from disk: only the list of file paths is held
    in memory, and each file is read and decoded (and resized) when the
    pipeline reaches it, in parallel, so a folder larger than the memory
    trains as well as a small one (what stays in memory downstream is the
    shuffle buffer of `pretraining_dataset` and the prefetched batches).

    Two sizes of image:

    - `image_size=None` (the default): each image at its own decoded size,
      the full image. `pretraining_dataset` then takes each random
      resized crop from the whole image and resizes only the crop to the
      view size (its per-image augmentation), as the official SimCLR
      pipeline does, and `evaluation_dataset` frames each image with the
      evaluation transform; neither can batch such images without an
      augmentation or transform. The choice for views larger than 64
      pixels (ImageNet-sized photos).
    - `image_size` given: every image resized to it. With
      `crop_to_aspect_ratio` (the default) the largest central region of
      the target aspect ratio is kept, so objects are not stretched: for
      square sizes the shorter side becomes `image_size` and the longer
      one is centre-cropped. With `False` the whole image is stretched
      instead. Random crops taken later cannot reach beyond the central
      square. The choice for small images (32 to 64 pixels) that train
      with the pretrainer's in-step augmentation.

    A file that cannot be decoded is handled per `on_error`:

    - `"raise"`: iterating stops with `tf.errors.InvalidArgumentError`
      whose message names the file (an error inside `tf.data` surfaces as
      TensorFlow's error type on every backend);
    - `"skip"`: the file is left out and its path printed to stderr, each
      pass over the data. Nothing is decoded twice for this: a failed
      decode drops the example, and the gap it leaves in the file order
      names it.

    `validate=True` instead decodes every file once, in parallel, before
    returning: a `ValueError` lists the failures (`on_error="raise"`), or a
    warning lists them and they are left out of the dataset (`"skip"`). It
    costs a full decoding pass (an hour or more for ImageNet on a few
    cores), so it is off by default.

    Labels and the pretrainer: a `SimCLRPretrainer` built without
    `num_classes` (no linear probe), with an objective that uses no labels,
    must get images alone. Either read the folder with `labelled=False`, or
    keep its labels here and pass `with_labels=False` to
    `pretraining_dataset`, which then yields images only.

    Args:
        directory: the folder (a string or path-like; `~` is expanded).
        image_size: None (each image at its own size, the default), or an
            int or tuple `(height, width)`, the size of every image.
        labelled: `"auto"` (labelled when some subfolder holds images),
            `True` (class subfolders required; images directly in
            `directory` are left out with a warning) or `False` (every
            image under `directory`, recursively, without labels).
        on_error: `"raise"` or `"skip"`, for files that cannot be decoded.
        validate: bool, whether to decode every file once up front.
        crop_to_aspect_ratio: bool, central crop to the target aspect ratio
            before resizing (`True`) or stretch (`False`); used with
            `image_size` only.
        interpolation: `"bilinear"` (default), `"nearest"`, `"bicubic"`,
            `"area"`, `"lanczos3"` or `"lanczos5"`; downscaling is
            antialiased.
        channels: 3 (RGB, the default) or 1 (grayscale).
        shuffle: bool, a new file order on each pass. Defaults to `False`.
        seed: int or None, the seed of `shuffle`: the same seed gives the
            same sequence of orders, whatever the global seed, so that
            processes that train together (each seeded its own way) read
            the files in the same order. None: a random order, shared by
            the processes of a PyTorch or JAX multi-process run.
        subset: None, the path of a subset file (see `read_subset_file`)
            or an iterable of file names: only files whose base name is
            listed are read. Listed names that are not found are counted
            in a warning; none found is an error.
        follow_links: bool, whether to descend into symbolic links to
            folders.

    Returns:
        A `tf.data.Dataset` of dicts: `"image"` (uint8, `(height, width,
        channels)`, of unknown height and width when `image_size` is None),
        `"label"` (int32 scalar; labelled folders only) and
        `"file_path"` (string). The dataset has the attributes
        `class_names` (the sorted class folder names, or None) and
        `file_paths` (the paths read, in sorted order), as Keras's
        `image_dataset_from_directory`; transformations return new datasets
        without them, so read them first. Its cardinality is known
        except with `on_error="skip"` and no `validate`.

    Raises:
        ValueError: if an argument is invalid, `directory` is not a folder
            or holds no image, or (with `validate=True` and
            `on_error="raise"`) a file cannot be decoded.

    Example:

    ```python
    # Full images; two random crops of each, resized to 224.
    train = keras_simclr.data.from_image_folder(
        "imagenet/train", on_error="skip", shuffle=True, seed=0
    )
    num_classes = len(train.class_names)  # for SimCLRPretrainer's probe
    augmentation = keras_simclr.layers.SimCLRAugmentation(224)
    batches = keras_simclr.data.pretraining_dataset(
        train, batch_size=256, augmentation=augmentation, shuffle_buffer=0
    )
    # Small images, resized once, augmented in the training step; a
    # pretrainer without a probe: images only.
    small = keras_simclr.data.from_image_folder("thumbnails", 32)
    unlabelled = keras_simclr.data.pretraining_dataset(
        small, batch_size=256, with_labels=False
    )
    ```
    """
    size = _validation.check_image_size(image_size, allow_none=True)
    _check_decoding_options(
        on_error, validate, crop_to_aspect_ratio, interpolation, channels,
        shuffle, seed,
    )
    follow_links = _validation.check_bool(follow_links, "follow_links")

    paths, labels, class_names = list_image_files(directory, labelled, follow_links)
    shown_directory = os.path.expanduser(os.fspath(directory))
    if subset is not None:
        selected = select_file_names(paths, subset, repr(shown_directory))
        paths = [paths[i] for i in selected]
        if labels is not None:
            labels = [labels[i] for i in selected]
    dataset = _image_dataset(
        paths, labels, f"in {shown_directory!r}", size, on_error, validate,
        crop_to_aspect_ratio, interpolation, channels, shuffle, seed,
    )
    dataset.class_names = class_names
    return dataset


def _file_paths_argument(file_paths):
    """`file_paths` as a list of strings, `~` expanded; at least one."""
    if isinstance(file_paths, (str, bytes, os.PathLike)):
        raise ValueError(
            "`file_paths` must be a list of image file paths, not one path "
            "(for a folder use from_image_folder). Received: "
            f"file_paths={file_paths!r}"
        )
    try:
        paths = list(file_paths)
    except TypeError:
        raise ValueError(
            "`file_paths` must be a list of image file paths. Received: "
            f"file_paths={file_paths!r}"
        ) from None
    if not paths or not all(isinstance(p, (str, os.PathLike)) for p in paths):
        more = "..." if len(paths) > 3 else ""
        raise ValueError(
            "`file_paths` must be a non-empty list of image file paths "
            f"(strings or path-like). Received: file_paths={paths[:3]!r}{more}"
        )
    return [os.path.expanduser(os.fspath(p)) for p in paths]


def from_image_files(
    file_paths,
    image_size=None,
    labels=None,
    on_error="raise",
    validate=False,
    crop_to_aspect_ratio=True,
    interpolation="bilinear",
    channels=3,
    shuffle=False,
    seed=None,
):
    """A dataset of the images in a list of files, decoded (and resized).

    `from_image_folder` for a list of files instead of a folder: a split
    made from `list_image_files`, a CSV of paths and labels. The files are
    read in the order given (or, with `shuffle`, a new random permutation
    of them on each pass), streamed from disk: each one is read and decoded
    when the pipeline reaches it, so the list may name more images than fit
    in memory. Decoding, resizing (or, with `image_size=None`, the default,
    keeping each image at its own size for crops from the full image),
    `on_error` and `validate` work as in `from_image_folder`.

    Args:
        file_paths: a list of image file paths (strings or path-like; `~`
            is expanded). Files in any format `tf.io.decode_image` reads
            (JPEG, PNG, BMP, GIF), whatever their names.
        image_size: None (each image at its own size, the default), or an
            int or tuple `(height, width)`, the size of every image.
        labels: None, or integer class ids, one per file (non-negative).
        on_error: `"raise"` or `"skip"`, for files that cannot be read or
            decoded (see `from_image_folder`).
        validate: bool, whether to decode every file once up front.
        crop_to_aspect_ratio: bool, central crop to the target aspect ratio
            before resizing (`True`) or stretch (`False`); used with
            `image_size` only.
        interpolation: resize method, as in `from_image_folder`.
        channels: 3 (RGB, the default) or 1 (grayscale).
        shuffle: bool, a new file order on each pass. Defaults to `False`.
        seed: int or None, the seed of `shuffle`, as in
            `from_image_folder`.

    Returns:
        A `tf.data.Dataset` of dicts: `"image"` (uint8, `(height, width,
        channels)`, of unknown height and width when `image_size` is None),
        `"label"` (int32 scalar; with `labels` only) and
        `"file_path"` (string). The dataset has the attributes
        `file_paths` (the paths read, in the order given) and `class_names`
        (None). Its cardinality is known except with `on_error="skip"` and
        no `validate`.

    Raises:
        ValueError: if an argument is invalid, `labels` do not match
            `file_paths` one to one, or (with `validate=True` and
            `on_error="raise"`) a file cannot be decoded.

    Example:

    ```python
    paths, labels, class_names = keras_simclr.data.list_image_files("photos")
    order = np.random.default_rng(0).permutation(len(paths))
    held_out, train = order[:1000], order[1000:]
    train = keras_simclr.data.from_image_files(
        [paths[i] for i in train], 224, [labels[i] for i in train],
        shuffle=True, seed=0,
    )
    ```
    """
    size = _validation.check_image_size(image_size, allow_none=True)
    _check_decoding_options(
        on_error, validate, crop_to_aspect_ratio, interpolation, channels,
        shuffle, seed,
    )
    paths = _file_paths_argument(file_paths)
    if labels is not None:
        labels = validate_labels(labels, count=len(paths)).tolist()
    dataset = _image_dataset(
        paths, labels, "given", size, on_error, validate, crop_to_aspect_ratio,
        interpolation, channels, shuffle, seed,
    )
    dataset.class_names = None
    return dataset


def _image_dataset(
    paths, labels, source, size, on_error, validate, crop_to_aspect_ratio,
    interpolation, channels, shuffle, seed,
):
    """The decoded dataset of `paths`, with its `file_paths` attribute.

    `source` completes "the N image files ..." in messages, e.g.
    "in 'photos'".
    """
    known_count = on_error == "raise"
    if validate:
        failed = _undecodable(paths, channels, tf.data.AUTOTUNE)
        if failed:
            listed = "\n  ".join(failed[:20])
            more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
            if on_error == "raise":
                raise ValueError(
                    f"{len(failed)} of the {len(paths)} image files {source} "
                    f"{_DECODE_FAILURE}:\n  {listed}{more}\n"
                    "Remove or replace them, or pass on_error='skip' to leave "
                    "them out."
                )
            warnings.warn(
                f"Leaving out {len(failed)} of the {len(paths)} image files "
                f"{source}: they {_DECODE_FAILURE}:\n  {listed}{more}",
                stacklevel=3,
            )
            failed = set(failed)
            keep = [i for i, path in enumerate(paths) if path not in failed]
            paths = [paths[i] for i in keep]
            if labels is not None:
                labels = [labels[i] for i in keep]
        known_count = True
        if not paths:
            raise ValueError(f"None of the image files {source} can be decoded.")

    dataset = _decoded_dataset(
        paths, labels, size, on_error, crop_to_aspect_ratio, interpolation,
        channels, shuffle, seed,
    )
    if known_count:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(paths)))
    dataset.file_paths = list(paths)
    return dataset


def _decoded_dataset(
    paths, labels, size, on_error, crop_to_aspect_ratio, interpolation,
    channels, shuffle, seed,
):
    count = len(paths)
    all_paths = tf.constant(paths)
    all_labels = None if labels is None else tf.constant(labels, tf.int32)
    # Stands in for the image at the end marker; its size does not matter
    # (it is filtered out) as long as it fits the shape of real images.
    placeholder = tf.zeros(list(size or (1, 1)) + [channels], tf.uint8)

    # Each pass reads the files in one order, a vector of indices: a
    # decoding failure drops an example, and the gap in the positions it
    # leaves names the file via this order.
    if shuffle and seed is None and distribute.processes_share_the_batches():
        # Processes that each read the files and take their slice of every
        # batch must read them in one order.
        seed = distribute.shared_seed()
    if shuffle and seed is not None:
        # Drawn from `seed` alone: the same orders in processes whose global
        # seeds differ (which `Dataset.shuffle` would mix in).
        orders = permutations(count, seed)
    elif shuffle:
        orders = (
            tf.data.Dataset.range(count)
            .shuffle(count, reshuffle_each_iteration=True)
            .batch(count)
        )
    else:
        orders = tf.data.Dataset.from_tensors(tf.range(count, dtype=tf.int64))

    def one_pass(order):
        def load(position):
            # Position `count` is an end marker, so failures at the end of
            # the order are reported too.
            index = order[tf.minimum(position, count - 1)]
            path = all_paths[index]

            def read():
                image = decode_image(tf.io.read_file(path), channels)
                if size is None:
                    return image
                return resize_image(image, size, crop_to_aspect_ratio, interpolation)

            image = tf.cond(position < count, read, lambda: placeholder)
            example = {"image": image, "file_path": path}
            if all_labels is not None:
                example["label"] = all_labels[index]
            return position, example

        def check(expected, element):
            position, example = element
            skipped = tf.gather(order, tf.range(expected, position))
            failed = tf.gather(all_paths, skipped)
            if on_error == "raise":
                checked = tf.debugging.Assert(
                    tf.equal(tf.size(failed), 0),
                    [
                        f"keras_simclr.data.from_image_folder: this image file "
                        f"{_DECODE_FAILURE}. Pass on_error='skip' to leave such "
                        "files out, or validate=True to check every file first:",
                        failed,
                    ],
                    summarize=20,
                )
            else:
                checked = print_if(
                    tf.size(failed) > 0,
                    "keras_simclr.data.from_image_folder: skipped image files "
                    f"that {_DECODE_FAILURE}:",
                    failed,
                    summarize=20,
                )
            with tf.control_dependencies([checked]):
                position = tf.identity(position)
            return position + 1, (position, example)

        positions = tf.data.Dataset.range(count + 1)
        examples = positions.map(
            load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        ).ignore_errors()
        examples = examples.scan(tf.constant(0, tf.int64), check)
        examples = examples.filter(lambda position, example: position < count)
        return examples.map(lambda position, example: example)

    return orders.flat_map(one_pass)
