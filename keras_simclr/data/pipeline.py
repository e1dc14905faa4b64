"""Batched input pipelines for `fit`, `evaluate` and `predict`."""

import os

import tensorflow as tf

from keras_simclr import _validation

AUTOTUNE = tf.data.AUTOTUNE
VIEW_KEYS = ("view_a", "view_b")


def _validate_cache(cache):
    if isinstance(cache, bool):
        return cache
    if isinstance(cache, (str, os.PathLike)) and os.fspath(cache):
        return os.path.expanduser(os.fspath(cache))
    raise ValueError(
        "`cache` must be False, True (in memory) or a file path prefix. "
        f"Received: cache={cache!r}"
    )


def _image_and_label(dataset, with_labels, function):
    """Maps `dataset` to `(image, label)` or `image` elements.

    Accepts elements that are dicts with `"image"` (and `"label"`), tuples
    `(image, label)` or `(image,)`, or image tensors. Returns the mapped
    dataset and whether it has labels.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"{function}() takes a tf.data.Dataset, e.g. from from_arrays, "
            f"from_image_folder or from_tfds. Received: dataset={dataset!r}"
        )
    spec = dataset.element_spec
    if isinstance(spec, dict) and "image" in spec:
        image_spec, label_spec = spec["image"], spec.get("label")

        def parts(example):
            return example["image"], example.get("label")

    elif isinstance(spec, tuple) and len(spec) in (1, 2):
        image_spec, label_spec = spec[0], spec[1] if len(spec) == 2 else None

        def parts(example):
            return example[0], example[1] if len(example) == 2 else None

    elif isinstance(spec, tf.TensorSpec):
        image_spec, label_spec = spec, None

        def parts(example):
            return example, None

    else:
        raise ValueError(
            f"{function}() needs examples that are dicts with an 'image' (and "
            "a 'label'), tuples (image, label), or images. Received a dataset "
            f"with element_spec={spec}"
        )
    if not isinstance(image_spec, tf.TensorSpec) or image_spec.shape.rank != 3:
        raise ValueError(
            f"{function}() needs unbatched images (height, width, channels). "
            f"Received images with spec {image_spec}; if the dataset is already "
            "batched, call dataset.unbatch() first."
        )
    shape = image_spec.shape
    if shape[0] is None or shape[1] is None or shape[2] not in (1, 3):
        raise ValueError(
            f"{function}() batches images, so they must all have one known "
            "size, with 1 or 3 channels. Received images of shape "
            f"{tuple(shape)}: pass `image_size` to from_tfds or "
            "from_image_folder to resize them."
        )
    labelled = with_labels and label_spec is not None
    if labelled and (
        not isinstance(label_spec, tf.TensorSpec)
        or label_spec.shape.rank != 0
        or not label_spec.dtype.is_integer
    ):
        raise ValueError(
            f"{function}() needs one integer class id per example as its "
            f"label. Received labels with spec {label_spec}"
        )

    def select(example):
        image, label = parts(example)
        return (image, label) if labelled else image

    if isinstance(spec, tuple):
        # tf.data passes the parts of a tuple as separate arguments.
        return dataset.map(lambda *example: select(example)), labelled
    return dataset.map(select), labelled


def pretraining_dataset(
    dataset,
    batch_size,
    augmentation=None,
    with_labels=True,
    shuffle_buffer=10_000,
    cache=False,
    repeat=False,
    drop_remainder=True,
    seed=None,
    deterministic=None,
):
    """Batches for `SimCLRPretrainer.fit`: shuffled, optionally augmented.

    Steps, in order: keep the image (and label), `cache`, shuffle with a
    buffer of `shuffle_buffer` examples (a new order each epoch), `repeat`,
    batch, make the two views (with `augmentation`), prefetch. Decoding
    happens upstream in the source (`from_image_folder`, `from_tfds`), in
    parallel.

    Two forms of batch:

    - `augmentation=None` (the default): raw images, `(images, labels)` or
      `images` (`images` alone when the dataset has no labels or
      `with_labels=False`). The pretrainer's own augmentation makes the views inside the
      compiled training step, on the accelerator: the faster choice.
    - `augmentation` a layer such as `SimCLRAugmentation`: it is called twice
      on each batch inside `tf.data` (on the CPU, any backend), giving
      `({"view_a": views, "view_b": views}, labels)`, a form
      `SimCLRPretrainer` takes as ready-made views.

    Reproducibility: with a `seed`, the order of the examples is the same
    for every pipeline built the same way (the sequence of epoch orders
    too); with `deterministic` (on by default when a `seed` is given) the
    augmentation runs one batch at a time, so a seeded augmentation layer
    also gives the same views, as long as each pipeline has its own layer
    instance (its random state advances with every batch). With
    `deterministic=False`, batches are augmented in parallel, in whatever
    order the threads take them.

    Args:
        dataset: a `tf.data.Dataset` of unbatched examples: dicts with
            `"image"` (and `"label"`), as the sources here give, tuples
            `(image, label)`, or images. Images must all have one size.
        batch_size: int, examples per batch (the global batch under a
            distribution strategy).
        augmentation: None, or a callable mapping a batch of images to one
            view, which must run inside `tf.data` on the current backend
            (keras_simclr's augmentation layers and Keras's preprocessing
            layers do; a layer written in `keras.ops` does so only on
            TensorFlow).
        with_labels: bool, whether to pass the labels on when the dataset
            has them: `True` for a pretrainer with an online linear probe
            (`num_classes`) or a supervised objective (`"supcon"`), which
            train on them; `False` for one without a probe, which takes
            images only (its `fit` refuses labels), or to ignore labels
            altogether. Defaults to `True`.
        shuffle_buffer: int, the shuffle buffer in examples; 0 or None for
            no shuffling (e.g. after `from_image_folder(shuffle=True)`,
            which already permutes the whole file list). The buffer holds
            decoded images: 10,000 of 224 x 224 RGB take 1.5 GB. Defaults
            to 10,000.
        cache: `False`, `True` (keep the decoded images in memory after the
            first epoch) or a file path prefix (cache on disk).
        repeat: bool, whether to repeat the data forever (then give
            `steps_per_epoch` to `fit`). Defaults to `False`.
        drop_remainder: bool, whether to drop the last partial batch; NT-Xent
            compares the images within a batch, so the default is `True`.
        seed: int or None, the seed of the shuffle.
        deterministic: None, `True` or `False`; None means `seed is not
            None`.

    Returns:
        A `tf.data.Dataset` of batches, ready for `fit`.

    Raises:
        ValueError: if an argument is invalid, or the examples are not
            unbatched images of one size (with integer labels).

    Example:

    ```python
    dataset = keras_simclr.data.from_tfds("cifar10", split="train")
    batches = keras_simclr.data.pretraining_dataset(
        dataset, batch_size=512, cache=True, seed=0
    )
    pretrainer.fit(batches, epochs=100)

    # Unlabelled pretraining (no `num_classes`): images only, even from a
    # folder of class subfolders.
    folder = keras_simclr.data.from_image_folder("photos", 96)
    batches = keras_simclr.data.pretraining_dataset(
        folder, batch_size=256, with_labels=False
    )
    ```
    """
    batch_size = _validation.check_int(batch_size, "batch_size")
    if augmentation is not None and not callable(augmentation):
        raise ValueError(
            "`augmentation` must be None or a callable such as a "
            f"SimCLRAugmentation layer. Received: augmentation={augmentation!r}"
        )
    with_labels = _validation.check_bool(with_labels, "with_labels")
    shuffle_buffer = _validation.check_int(
        shuffle_buffer, "shuffle_buffer", minimum=0, allow_none=True
    )
    cache = _validate_cache(cache)
    repeat = _validation.check_bool(repeat, "repeat")
    drop_remainder = _validation.check_bool(drop_remainder, "drop_remainder")
    seed = _validation.check_seed(seed)
    deterministic = _validation.check_choice(
        deterministic, "deterministic", (None, True, False)
    )
    if deterministic is None:
        deterministic = seed is not None

    dataset, labelled = _image_and_label(dataset, with_labels, "pretraining_dataset")
    dataset = _cached(dataset, cache)
    if shuffle_buffer:
        dataset = dataset.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(
        batch_size,
        drop_remainder=drop_remainder,
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    if augmentation is not None:

        def make_views(images):
            return {key: augmentation(images) for key in VIEW_KEYS}

        if labelled:
            views = lambda images, labels: (make_views(images), labels)  # noqa: E731
        else:
            views = make_views
        if deterministic:
            # One batch at a time: a seeded layer's random state then
            # advances in the same order on every run.
            dataset = dataset.map(views)
        else:
            dataset = dataset.map(
                views, num_parallel_calls=AUTOTUNE, deterministic=False
            )
    return dataset.prefetch(AUTOTUNE)


def evaluation_dataset(
    dataset, batch_size, with_labels=True, cache=False, drop_remainder=False
):
    """Batches for `evaluate` and `predict`: in order, every example once.

    Args:
        dataset: a `tf.data.Dataset` of unbatched examples, as for
            `pretraining_dataset`.
        batch_size: int, examples per batch.
        with_labels: bool, whether to pass the labels on when the dataset
            has them. Defaults to `True`.
        cache: `False`, `True` (in memory) or a file path prefix.
        drop_remainder: bool, whether to drop the last partial batch.
            Defaults to `False` (every example is seen).

    Returns:
        A `tf.data.Dataset` of `(images, labels)` or `images` batches.

    Raises:
        ValueError: as `pretraining_dataset`.

    Example:

    ```python
    test = keras_simclr.data.from_tfds("cifar10", split="test")
    features = encoder.predict(
        keras_simclr.data.evaluation_dataset(test, 512, with_labels=False)
    )
    ```
    """
    batch_size = _validation.check_int(batch_size, "batch_size")
    with_labels = _validation.check_bool(with_labels, "with_labels")
    cache = _validate_cache(cache)
    drop_remainder = _validation.check_bool(drop_remainder, "drop_remainder")
    dataset, _ = _image_and_label(dataset, with_labels, "evaluation_dataset")
    dataset = _cached(dataset, cache)
    dataset = dataset.batch(
        batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE
    )
    return dataset.prefetch(AUTOTUNE)


def _cached(dataset, cache):
    if cache is False:
        return dataset
    return dataset.cache("" if cache is True else cache)
