"""Lists of image file names, such as the official ImageNet 1% / 10% subsets."""

import os
import warnings

import tensorflow as tf

from keras_simclr.data._images import base_names
from keras_simclr.data._images import print_if


def read_subset_file(path):
    """Reads a list of image file names, one a line.

    The format of the SimCLR v2 subsets of ImageNet
    (`imagenet_subsets/1percent.txt` and `10percent.txt` in
    google-research/simclr): one file name a line, such as
    `n01440764_10026.JPEG`. Surrounding whitespace and blank lines are
    ignored, and so are lines that start with `#`. Repeated names are kept
    once.

    Args:
        path: path of the text file.

    Returns:
        A list of the file names, in the order of the file.

    Raises:
        ValueError: if the file holds no name, or a line holds a path or
            several words instead of one file name.
        FileNotFoundError: if there is no such file.

    Example:

    ```python
    names = keras_simclr.data.read_subset_file("imagenet_subsets/1percent.txt")
    train = keras_simclr.data.from_image_folder(
        "imagenet/train", 224, subset=names
    )
    ```
    """
    path = os.path.expanduser(os.fspath(path))
    names = []
    seen = set()
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            if len(name.split()) != 1 or "/" in name or "\\" in name:
                raise ValueError(
                    f"Each line of a subset file must be one image file name "
                    f"such as 'n01440764_10026.JPEG'. Received in {path}, "
                    f"line {number}: {name!r}"
                )
            if name not in seen:
                seen.add(name)
                names.append(name)
    if not names:
        raise ValueError(f"The subset file {path} lists no file name.")
    return names


def as_file_names(subset, argument="subset"):
    """`subset` (a subset file's path or an iterable of names) as a list."""
    if isinstance(subset, (str, os.PathLike)):
        return read_subset_file(subset)
    try:
        names = list(dict.fromkeys(str(name) for name in subset))
    except TypeError:
        raise ValueError(
            f"`{argument}` must be the path of a subset file or an iterable "
            f"of file names. Received: {argument}={subset!r}"
        ) from None
    if not names:
        raise ValueError(
            f"`{argument}` lists no file name. Received: {argument}={subset!r}"
        )
    return names


def select_file_names(file_paths, subset, where, argument="subset"):
    """Indices of `file_paths` whose base name is listed in `subset`.

    Warns with the number of listed names that no path has, and raises
    ValueError when none is found. `where` names the place searched, for
    the messages.
    """
    names = as_file_names(subset, argument)
    wanted = set(names)
    selected = [
        i
        for i, path in enumerate(file_paths)
        if os.path.basename(path) in wanted
    ]
    found = {os.path.basename(file_paths[i]) for i in selected}
    missing = [name for name in names if name not in found]
    if len(missing) == len(names):
        raise ValueError(
            f"None of the {len(names)} file names of `{argument}` was found "
            f"in {where} (first listed: {names[0]!r})."
        )
    if missing:
        examples = ", ".join(repr(name) for name in missing[:5])
        warnings.warn(
            f"{len(missing)} of the {len(names)} file names of `{argument}` "
            f"were not found in {where} and are left out; the first: "
            f"{examples}.",
            stacklevel=3,
        )
    return selected


def _file_name_key(element_spec, key):
    if not isinstance(element_spec, dict):
        raise ValueError(
            "filter_by_file_names() needs a dataset of dicts with a file name "
            "(from_tfds or from_image_folder datasets). Received a dataset "
            f"with element_spec={element_spec}"
        )
    if key is None:
        key = next(
            (k for k in ("file_name", "file_path") if k in element_spec), None
        )
        if key is None:
            raise ValueError(
                "The dataset has no 'file_name' or 'file_path' feature to "
                f"filter on; its features: {sorted(element_spec)}. Pass `key`."
            )
    elif key not in element_spec:
        raise ValueError(
            f"The dataset has no feature {key!r}; its features: "
            f"{sorted(element_spec)}. Received: key={key!r}"
        )
    spec = element_spec[key]
    if spec.dtype != tf.string or spec.shape.rank != 0:
        raise ValueError(
            f"The feature {key!r} must hold one string per example. "
            f"Received: {spec}"
        )
    return key


def _placeholder(spec):
    if not isinstance(spec, tf.TensorSpec):
        raise ValueError(
            "filter_by_file_names() supports datasets of dense tensors only. "
            f"Received a feature with spec {spec}"
        )
    if spec.shape.rank is None:
        return tf.zeros([], spec.dtype)
    return tf.zeros([d or 0 for d in spec.shape.as_list()], spec.dtype)


def filter_by_file_names(dataset, file_names, key=None, report_missing=True):
    """Keeps the examples whose file name is listed.

    Matches the base name of the example's `key` feature (`file_name`, as
    in tfds's `imagenet2012`, or `file_path`, as in `from_image_folder`
    datasets) against `file_names`. The filter is lazy: it reads the whole
    dataset on every pass (for tfds, prefer `from_tfds(..., subset=...)`,
    which filters before decoding; for an image folder,
    `from_image_folder(..., subset=...)`, which filters the file list).

    With `report_missing`, the end of every full pass prints to stderr how
    many listed names no example had (a dataset cannot tell earlier).

    Args:
        dataset: a `tf.data.Dataset` of dicts with a string file name.
        file_names: iterable of file names, or the path of a subset file
            (see `read_subset_file`).
        key: the feature with the file name; by default `"file_name"` or
            else `"file_path"`.
        report_missing: bool, whether to print the count of listed names
            that were not found. Defaults to `True`.

    Returns:
        A `tf.data.Dataset` with the same elements, fewer of them.

    Raises:
        ValueError: if the dataset has no such feature, or `file_names`
            lists nothing.
    """
    names = as_file_names(file_names, "file_names")
    key = _file_name_key(dataset.element_spec, key)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(names), tf.range(len(names), dtype=tf.int64)
        ),
        default_value=-1,
    )

    def is_listed(example):
        return table.lookup(base_names(example[key])) >= 0

    if not report_missing:
        return dataset.filter(is_listed)

    total = len(names)
    placeholder = tf.nest.map_structure(_placeholder, dataset.element_spec)
    marked = dataset.map(lambda example: (True, example))
    # A last element marks the end of each pass, where the count is known.
    marked = marked.concatenate(tf.data.Dataset.from_tensors((False, placeholder)))

    def count(found, element):
        real, example = element
        listed = tf.logical_and(real, is_listed(example))
        found = found + tf.cast(listed, tf.int64)

        printed = print_if(
            tf.logical_and(tf.logical_not(real), found < total),
            "keras_simclr.data.filter_by_file_names:",
            total - found,
            "of the",
            total,
            "listed file names were not found in this pass over the dataset.",
        )
        with tf.control_dependencies([printed]):
            listed = tf.identity(listed)
        return found, (listed, example)

    scanned = marked.scan(tf.constant(0, tf.int64), count)
    return scanned.filter(lambda listed, example: listed).map(
        lambda listed, example: example
    )

