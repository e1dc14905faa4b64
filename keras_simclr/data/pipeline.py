"""Batched input pipelines for `fit`, `evaluate` and `predict`."""

import os

import keras
import tensorflow as tf

from keras_simclr import _validation
from keras_simclr import distribute

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
    if shape[2] not in (1, 3):
        raise ValueError(
            f"{function}() needs images with 1 or 3 channels. Received images "
            f"of shape {tuple(shape)}"
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


# Views larger than this (in pixels, either side) are cropped from the whole
# decoded image by default; smaller ones keep the batched path.
FULL_IMAGE_MIN_VIEW_SIZE = 64


def _image_shape(dataset, labelled):
    spec = dataset.element_spec
    return (spec[0] if labelled else spec).shape


def _has_one_size(shape):
    return shape[0] is not None and shape[1] is not None


def _view_size(augmentation):
    """The `(height, width)` of the views `augmentation` makes, if it says."""
    size = getattr(augmentation, "image_size", None)
    try:
        return _validation.check_image_size(size)
    except ValueError:
        return None


def _choose_per_image(augmentation, augment_per_image, shape):
    """Whether `pretraining_dataset` augments each image before batching."""
    one_size = _has_one_size(shape)
    if augmentation is None:
        if augment_per_image is True:
            raise ValueError(
                "`augment_per_image=True` crops each image to the view size "
                "before batching, which needs an `augmentation` layer such as "
                "SimCLRAugmentation(224). Received: augment_per_image=True, "
                "augmentation=None"
            )
        if not one_size:
            raise ValueError(
                "pretraining_dataset() with `augmentation=None` batches the raw "
                "images (the pretrainer makes the views), so they must all have "
                f"one size. Received images of shape {tuple(shape)} (decoded at "
                "their own size): pass `augmentation`, e.g. "
                "SimCLRAugmentation(224), to crop each full image to the view "
                "size before batching, or pass `image_size` to from_tfds, "
                "from_image_folder or from_image_files to resize them."
            )
        return False
    if augment_per_image is False:
        if not one_size:
            raise ValueError(
                "`augment_per_image=False` batches the images before the "
                "augmentation, so they must all have one size. Received images "
                f"of shape {tuple(shape)} (decoded at their own size): pass "
                "augment_per_image='auto' or True, or pass `image_size` to the "
                "source. Received: augment_per_image=False"
            )
        return False
    if augment_per_image is True or not one_size:
        return True
    view_size = _view_size(augmentation)
    return view_size is not None and max(view_size) > FULL_IMAGE_MIN_VIEW_SIZE


def _two_views(augmentation, images):
    """`{"view_a": ..., "view_b": ...}`: two calls of `augmentation`, or one
    call of a layer that returns a pair of views."""
    first = augmentation(images)
    if isinstance(first, (tuple, list)) and len(first) == 2:
        return dict(zip(VIEW_KEYS, first))
    return {VIEW_KEYS[0]: first, VIEW_KEYS[1]: augmentation(images)}


def _pass_seeds(seed):
    """A dataset of one element, `[seed, p]`, where `p` counts the passes
    over it: 1 on the first iteration, 2 on the next, and so on.

    The count lives in a variable that every iterator of the dataset
    shares, so each pass (each epoch of Keras's `fit()`, each `repeat()`)
    gets new seeds, while two processes that build the same pipeline with
    the same `seed` and go through it as many times get the same ones.
    """
    with tf.init_scope(), tf.device("/cpu:0"):
        passes = tf.Variable(0, dtype=tf.int64, trainable=False)
    return tf.data.Dataset.from_tensors(tf.constant(seed, tf.int64)).map(
        lambda seed: tf.stack([seed, passes.assign_add(1)])
    )


def permutations(count, seed):
    """A dataset of one element per pass: a random permutation of
    `range(count)` (int64), a new one on each pass, drawn from `seed` alone.

    `tf.data.Dataset.shuffle(seed=...)` mixes the global seed
    (`tf.random.set_seed`, `keras.utils.set_random_seed`) into its order,
    so processes seeded differently shuffle differently. These
    permutations come from a stateless op seeded by `seed` and the pass
    number: the same in every process, whatever its global seed.

    Args:
        count: int, the number of indices.
        seed: int, the seed.

    Returns:
        A `tf.data.Dataset` of `(count,)` int64 permutations.
    """
    return _pass_seeds(seed).map(
        lambda seeds: tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64), seed=seeds
        )
    )


def seeded_shuffle(dataset, buffer_size, seed):
    """`dataset.shuffle(buffer_size)` with an order drawn from `seed` alone.

    A new order on each pass, as with `reshuffle_each_iteration=True`, and
    the same sequence of orders in every process that builds the pipeline
    with the same `seed`, whatever the process's global seed (which
    `dataset.shuffle(seed=...)` mixes in, see `permutations`).

    Args:
        dataset: a `tf.data.Dataset`.
        buffer_size: int, the shuffle buffer.
        seed: int, the seed.

    Returns:
        The shuffled `tf.data.Dataset`, of the same cardinality.
    """

    def one_pass(seeds):
        # Inside a dataset function the default graph is the function's:
        # clearing its graph-level seed (the global seed, copied when the
        # function was traced) leaves the shuffle's seeds to the op seed.
        tf.compat.v1.set_random_seed(None)
        op_seed = tf.random.stateless_uniform(
            [], seeds, minval=0, maxval=2**31 - 1, dtype=tf.int64
        )
        return dataset.shuffle(
            buffer_size, seed=op_seed, reshuffle_each_iteration=False
        )

    shuffled = _pass_seeds(seed).flat_map(one_pass)
    count = int(dataset.cardinality())
    if count >= 0 or count == tf.data.INFINITE_CARDINALITY:
        shuffled = shuffled.apply(tf.data.experimental.assert_cardinality(count))
    return shuffled


def _map_images(dataset, labelled, function, parallel, deterministic=False):
    """Maps `function` over the images of `dataset`, keeping the labels;
    in parallel, in order only if `deterministic`."""
    if labelled:
        mapped = lambda images, labels: (function(images), labels)  # noqa: E731
    else:
        mapped = function
    if not parallel:
        return dataset.map(mapped)
    return dataset.map(
        mapped, num_parallel_calls=AUTOTUNE, deterministic=deterministic
    )


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
    augment_per_image="auto",
):
    """Batches for `SimCLRPretrainer.fit`: shuffled, optionally augmented.

    Steps, in order: keep the image (and label), `cache`, shuffle with a
    buffer of `shuffle_buffer` examples (a new order each epoch), `repeat`,
    make the two views of each image (per-image augmentation), batch, make
    the two views of each batch (batched augmentation), prefetch. Decoding
    happens upstream in the source (`from_image_folder`, `from_tfds`), in
    parallel.

    Three forms of pipeline:

    - `augmentation=None` (the default): raw images, batched,
      `(images, labels)` or `images` (`images` alone when the dataset has
      no labels or `with_labels=False`). The pretrainer's own augmentation
      makes the views inside the compiled training step, on the
      accelerator: the faster choice for images already resized to one
      small size (arrays, CIFAR-10).
    - `augmentation` a layer such as `SimCLRAugmentation`, per image (the
      full-image mode): each image, at whatever size the source decoded it,
      gets its two random resized crops before batching, so every crop may
      come from anywhere in the whole image and only the crop is resized to
      the view size, as in the official SimCLR input pipeline. Read the
      images at their own size for this: `from_image_folder(directory)`,
      `from_image_files(paths)` and `from_tfds(name)` without `image_size`.
    - `augmentation` a layer, per batch: the images (all of one size) are
      batched first and the layer is called on each batch.

    Both augmented forms run inside `tf.data` (on the CPU, any backend) and
    give `({"view_a": views, "view_b": views}, labels)`, a form
    `SimCLRPretrainer` takes as ready-made views. `augment_per_image="auto"`
    picks the per-image form when the images have no single size (decoded
    at their own size), or when the views are larger than 64 pixels (the
    layer's `image_size`); the batched form otherwise.

    Memory: the shuffle buffer and the cache hold decoded images as the
    source gives them. Images decoded at their own size are larger than
    resized ones (an ImageNet photo averages about 400 x 350 pixels, 0.4 MB
    as uint8, so a buffer of 10,000 holds about 4 GB and a cache of the
    1.28 million training images about 540 GB): for large image folders
    shuffle the file list instead (`from_image_folder(shuffle=True)`),
    keep `shuffle_buffer` small or 0, and leave `cache` off, or cache to a
    file path where that much disk is free.

    Reproducibility: with a `seed`, the order of the examples is the same
    for every pipeline built the same way (the sequence of epoch orders
    too); with `deterministic` (on by default when a `seed` is given) the
    augmentation runs one image or batch at a time, so a seeded
    augmentation layer also gives the same views, as long as each pipeline
    has its own layer instance (its random state advances with every
    call). With `deterministic=False`, images or batches are augmented in
    parallel, in whatever order the threads take them: the fast choice,
    especially per image.

    Several processes (PyTorch or JAX processes, `tf.distribute` workers)
    each run the whole pipeline and take their slice of every batch, so
    they must agree on every batch: the shuffle's order is drawn from
    `seed` alone (not from the processes' global seeds, which may
    differ), and the examples keep their order even with
    `deterministic=False` (a parallel map that yields in order; a map that
    yields out of order would put an image in different batches in
    different processes, trained twice or never). The views themselves
    may differ between processes: each trains on the views of its own
    slice.

    Args:
        dataset: a `tf.data.Dataset` of unbatched examples: dicts with
            `"image"` (and `"label"`), as the sources here give, tuples
            `(image, label)`, or images. Images of different sizes need a
            per-image `augmentation`.
        batch_size: int, examples per batch (the global batch under a
            distribution strategy).
        augmentation: None, or a callable mapping images (a batch, or one
            image in the per-image form) to one view, which must run inside
            `tf.data` on the current backend (keras_simclr's augmentation
            layers and Keras's preprocessing layers do; a layer written in
            `keras.ops` does so only on TensorFlow). It is called twice for
            the two views, or once if it returns a pair `(view_a, view_b)`.
        with_labels: bool, whether to pass the labels on when the dataset
            has them: `True` for a pretrainer with an online linear probe
            (`num_classes`) or a supervised objective (`"supcon"`), which
            train on them; `False` for one without a probe, which takes
            images only (its `fit` refuses labels), or to ignore labels
            altogether. Defaults to `True`.
        shuffle_buffer: int, the shuffle buffer in examples; 0 or None for
            no shuffling (e.g. after `from_image_folder(shuffle=True)`,
            which already permutes the whole file list). The buffer holds
            decoded images: 10,000 of 224 x 224 RGB take 1.5 GB, more at
            their own size (see above). Defaults to 10,000.
        cache: `False`, `True` (keep the decoded images in memory after the
            first epoch) or a file path prefix (cache on disk). The cache
            holds the images before augmentation, so every epoch still
            gets new views.
        repeat: bool, whether to repeat the data forever (then give
            `steps_per_epoch` to `fit`). Defaults to `False`.
        drop_remainder: bool, whether to drop the last partial batch; NT-Xent
            compares the images within a batch, so the default is `True`.
        seed: int or None, the seed of the shuffle. The order depends on
            `seed` alone, not on the global seed (`tf.random.set_seed`), so
            that processes seeded differently that train together agree on
            every batch. None: a random order, shared by the processes of a
            PyTorch or JAX multi-process run (a multi-worker `tf.distribute`
            run needs a `seed`).
        deterministic: None, `True` or `False`; None means `seed is not
            None`. When several processes train together
            (`keras_simclr.distribute.processes_share_the_batches()`), each
            takes its slice of every batch this pipeline gives, so the
            examples always keep their order: `False` then still augments
            in parallel, but yields the results in order.
        augment_per_image: `"auto"`, `True` or `False`: whether
            `augmentation` runs on each image before batching (`True`) or
            on each batch (`False`, which needs images of one size).
            `"auto"` (the default): per image when the images have no
            single size or the views are larger than 64 pixels, per batch
            otherwise. Needs an `augmentation` to be `True`.

    Returns:
        A `tf.data.Dataset` of batches, ready for `fit`.

    Raises:
        ValueError: if an argument is invalid, the examples are not
            unbatched images (with integer labels), or the images have no
            single size and cannot be batched as asked (no `augmentation`,
            or `augment_per_image=False`).

    Example:

    ```python
    dataset = keras_simclr.data.from_tfds("cifar10", split="train")
    batches = keras_simclr.data.pretraining_dataset(
        dataset, batch_size=512, cache=True, seed=0
    )
    pretrainer.fit(batches, epochs=100)

    # ImageNet-sized photos: each image decoded at its own size, its two
    # random crops taken from the whole image and resized to 224 x 224.
    folder = keras_simclr.data.from_image_folder("photos", shuffle=True)
    batches = keras_simclr.data.pretraining_dataset(
        folder,
        batch_size=256,
        augmentation=keras_simclr.layers.SimCLRAugmentation(224),
        shuffle_buffer=1000,
        with_labels=False,  # a pretrainer without a probe takes images only
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
    augment_per_image = _validation.check_choice(
        augment_per_image, "augment_per_image", ("auto", True, False)
    )
    if deterministic is None:
        deterministic = seed is not None

    dataset, labelled = _image_and_label(dataset, with_labels, "pretraining_dataset")
    per_image = _choose_per_image(
        augmentation, augment_per_image, _image_shape(dataset, labelled)
    )
    # Several processes each run this pipeline and take their slice of
    # every batch: they must agree on the batches, so the examples keep
    # one order whatever `deterministic` says, and the shuffle one seed.
    shared = distribute.processes_share_the_batches()
    dataset = _cached(dataset, cache)
    if shuffle_buffer:
        if seed is None and shared:
            seed = distribute.shared_seed()
        if seed is None:
            dataset = dataset.shuffle(shuffle_buffer, reshuffle_each_iteration=True)
        else:
            dataset = seeded_shuffle(dataset, shuffle_buffer, seed)
    if repeat:
        dataset = dataset.repeat()
    make_views = lambda images: _two_views(augmentation, images)  # noqa: E731
    # With `deterministic`, one element at a time: a seeded layer's random
    # state then advances in the same order on every run. Shared batches
    # only need the order of the examples: a parallel map that keeps it.
    keep_order = deterministic or shared
    if per_image:
        dataset = _map_images(
            dataset, labelled, make_views, parallel=not deterministic,
            deterministic=keep_order,
        )
    dataset = dataset.batch(
        batch_size,
        drop_remainder=drop_remainder,
        num_parallel_calls=AUTOTUNE,
        deterministic=keep_order,
    )
    if augmentation is not None and not per_image:
        dataset = _map_images(
            dataset, labelled, make_views, parallel=not deterministic,
            deterministic=keep_order,
        )
    return dataset.prefetch(AUTOTUNE)


def _evaluation_transform(transform):
    """`transform` as a function of one image: a Keras layer in inference
    mode (`training=False`), any other callable as it is."""
    if isinstance(transform, keras.Layer):
        return lambda image: transform(image, training=False)
    return transform


def evaluation_dataset(
    dataset,
    batch_size,
    with_labels=True,
    cache=False,
    drop_remainder=False,
    transform=None,
):
    """Batches for `evaluate` and `predict`: in order, every example once.

    With a `transform`, each image goes through it before batching: the way
    to evaluate on images decoded at their own size (the full-image mode of
    `pretraining_dataset`), which cannot be batched as they are. Pass the
    pretraining augmentation layer: a Keras layer is called with
    `training=False`, which for `SimCLRAugmentation` is its preset's
    evaluation transform (a central crop resized to the view size), so the
    evaluated images are framed as the pretraining views were sized.

    Args:
        dataset: a `tf.data.Dataset` of unbatched examples, as for
            `pretraining_dataset`. Images of different sizes need a
            `transform`.
        batch_size: int, examples per batch.
        with_labels: bool, whether to pass the labels on when the dataset
            has them. Defaults to `True`.
        cache: `False`, `True` (in memory) or a file path prefix; the
            images are cached before `transform`, as the source gives them
            (see `pretraining_dataset` for their size).
        drop_remainder: bool, whether to drop the last partial batch.
            Defaults to `False` (every example is seen).
        transform: None, or a callable mapping one image `(H, W, C)` to an
            image of a fixed size, run inside `tf.data` (as the
            augmentation of `pretraining_dataset`); a Keras layer is called
            with `training=False`. Defaults to None: images are batched as
            they are.

    Returns:
        A `tf.data.Dataset` of `(images, labels)` or `images` batches.

    Raises:
        ValueError: as `pretraining_dataset`; also if `transform` is not
            callable, or the images have no single size and no `transform`
            is given.

    Example:

    ```python
    test = keras_simclr.data.from_tfds("cifar10", split="test")
    features = encoder.predict(
        keras_simclr.data.evaluation_dataset(test, 512, with_labels=False)
    )

    # Images decoded at their own size, framed by the evaluation transform
    # of the pretraining augmentation (central crop, resized to 224).
    validation = keras_simclr.data.from_image_folder("imagenet/val")
    batches = keras_simclr.data.evaluation_dataset(
        validation, 256, transform=keras_simclr.layers.SimCLRAugmentation(224)
    )
    ```
    """
    batch_size = _validation.check_int(batch_size, "batch_size")
    with_labels = _validation.check_bool(with_labels, "with_labels")
    cache = _validate_cache(cache)
    drop_remainder = _validation.check_bool(drop_remainder, "drop_remainder")
    if transform is not None and not callable(transform):
        raise ValueError(
            "`transform` must be None or a callable such as a "
            f"SimCLRAugmentation layer. Received: transform={transform!r}"
        )
    dataset, labelled = _image_and_label(dataset, with_labels, "evaluation_dataset")
    shape = _image_shape(dataset, labelled)
    if transform is None and not _has_one_size(shape):
        raise ValueError(
            "evaluation_dataset() batches the images as they are when "
            "`transform` is None, so they must all have one size. Received "
            f"images of shape {tuple(shape)} (decoded at their own size): pass "
            "`transform`, e.g. the pretraining SimCLRAugmentation layer (its "
            "evaluation transform: a central crop resized to the view size), "
            "or pass `image_size` to the source. Received: transform=None"
        )
    dataset = _cached(dataset, cache)
    if transform is not None:
        dataset = _map_images(
            dataset,
            labelled,
            _evaluation_transform(transform),
            parallel=True,
            deterministic=True,
        )
    dataset = dataset.batch(
        batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE
    )
    return dataset.prefetch(AUTOTUNE)


def _cached(dataset, cache):
    if cache is False:
        return dataset
    return dataset.cache("" if cache is True else cache)
