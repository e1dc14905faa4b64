"""Weighted k-nearest-neighbour evaluation of frozen features.

The protocol of InstDisc (Wu et al., 2018), also used by solo-learn and
lightly to follow self-supervised training: each query votes with its `k`
most cosine-similar training features, each neighbour weighted by
`exp(similarity / temperature)`, and the class with the largest summed weight
wins.
"""

import keras
import numpy as np
from keras import ops

from keras_simclr import _data_checks
from keras_simclr import _validation
from keras_simclr import distribute
from keras_simclr.layers import data_layer
from keras_simclr.models.task import Task

# Indices of training features are handled as float32, exact up to 2**24.
MAX_TRAIN_FEATURES = 2**24


def knn_scores(
    train_features,
    train_labels,
    query_features,
    num_classes,
    k=200,
    temperature=0.1,
    chunk_size=256,
):
    """Weighted kNN class scores of each query.

    Features are L2-normalised, so the similarity of two features is their
    cosine (a feature of zero norm stays zero: similarity 0 with all). The
    `k` training features most similar to a query are its neighbours;
    neighbour `j`, of similarity `s_j`, has the weight
    `exp(s_j / temperature)`, and the score of a class is the sum of the
    weights of the neighbours of that class, divided by the sum of all `k`
    weights. Dividing by the total changes no ranking, and lets the weights be
    computed as `exp((s_j - s_max) / temperature)`, which neither overflows
    nor underflows to all zeros, however small the temperature.

    Queries are processed `chunk_size` at a time, so memory holds a few
    arrays of `chunk_size` rows by the training set (e.g. 256 x 50,000
    floats, 51 MB each, for CIFAR-10), never the whole similarity matrix.

    If `k` is larger than the training set, it is clamped to its size: every
    training feature is then a neighbour. Ties are broken deterministically,
    the same way on every backend: among training features of equal
    similarity at the `k`-th place, those of lower index are the neighbours.

    Args:
        train_features: array `(N, F)`, the features of the training set.
        train_labels: integer array `(N,)`, class ids in `[0, num_classes)`.
        query_features: array `(Q, F)`, the features to classify.
        num_classes: int >= 2, the number of classes.
        k: positive int, the number of neighbours. Defaults to 200.
        temperature: positive float. Defaults to 0.1.
        chunk_size: positive int, how many queries are scored at once.
            Defaults to 256.

    Returns:
        A float32 NumPy array `(Q, num_classes)`: each row is non-negative and
        sums to 1.

    Raises:
        ValueError: if an argument has the wrong shape, type or range.

    Example:

    ```python
    scores = keras_simclr.evaluation.knn_scores(
        train_features, train_labels, test_features, num_classes=10
    )
    top1 = np.mean(scores.argmax(axis=1) == test_labels)
    ```

    References:
        - [Wu et al., 2018](https://arxiv.org/abs/1805.01978), InstDisc,
          Section 3.5.
    """
    train_features = _as_features(train_features, "train_features")
    query_features = _as_features(query_features, "query_features")
    if train_features.shape[1] != query_features.shape[1]:
        raise ValueError(
            "`train_features` and `query_features` must have the same number "
            f"of features. Received: train_features.shape="
            f"{train_features.shape}, query_features.shape={query_features.shape}"
        )
    if not 0 < len(train_features) <= MAX_TRAIN_FEATURES:
        raise ValueError(
            "`train_features` must hold at least one and at most "
            f"{MAX_TRAIN_FEATURES} feature vectors. "
            f"Received: train_features.shape={train_features.shape}"
        )
    _validation.check_num_classes(num_classes)
    train_labels = _data_checks.class_ids(
        train_labels, "train_labels", num_images=len(train_features)
    )
    _data_checks.check_class_id_range(train_labels, "train_labels", num_classes)
    _check_knn_arguments(k, temperature, chunk_size)

    k = min(k, len(train_features))
    num_queries = len(query_features)
    chunk_size = min(chunk_size, max(num_queries, 1))
    train = ops.convert_to_tensor(_l2_normalize(train_features))
    labels = ops.convert_to_tensor(train_labels.astype("int32"))
    temperature = ops.convert_to_tensor(temperature, "float32")
    score_chunk = _compiled_score_chunk()
    scores = []
    for start in range(0, num_queries, chunk_size):
        queries = _l2_normalize(query_features[start : start + chunk_size])
        size = len(queries)
        # All chunks of one shape: a compiled scorer is traced only once.
        queries = np.pad(queries, ((0, chunk_size - size), (0, 0)))
        chunk_scores = score_chunk(
            train, labels, ops.convert_to_tensor(queries), temperature,
            k, num_classes,
        )
        scores.append(ops.convert_to_numpy(chunk_scores)[:size])
    if not scores:
        return np.zeros((0, num_classes), "float32")
    return np.concatenate(scores).astype("float32")


def knn_predict(
    train_features,
    train_labels,
    query_features,
    num_classes,
    k=200,
    temperature=0.1,
    chunk_size=256,
):
    """Weighted kNN predicted class of each query.

    The class of largest score of `knn_scores` (same arguments), the lowest
    class id among classes of equal score.

    Returns:
        An int64 NumPy array `(Q,)` of class ids.

    Example:

    ```python
    predictions = keras_simclr.evaluation.knn_predict(
        train_features, train_labels, test_features, num_classes=10, k=20
    )
    ```
    """
    scores = knn_scores(
        train_features,
        train_labels,
        query_features,
        num_classes,
        k=k,
        temperature=temperature,
        chunk_size=chunk_size,
    )
    return np.argmax(scores, axis=1).astype("int64")


def knn_accuracy(
    encoder,
    train_data,
    test_data,
    k=200,
    temperature=0.1,
    batch_size=256,
    num_classes=None,
    chunk_size=256,
    preprocessing=None,
):
    """Weighted kNN accuracy of an encoder's frozen features.

    Computes the features of the training and test images once, with
    `training=False` (batch norm in inference mode), and classifies each test
    image by `knn_scores` among the training features. Given a
    `SimCLRPretrainer` (or a `SimCLRClassifier`), the features are its
    encoder's, of the images after its evaluation transform (see
    `extract_features`).

    Args:
        encoder: a `SimCLRPretrainer` or `SimCLRClassifier`, or a Keras
            model or layer from images to feature vectors `(N, F)`, e.g.
            `SimCLRPretrainer.encoder`.
        train_data: the labelled images the neighbours come from: a tuple
            `(images, labels)` of arrays, or a `tf.data.Dataset` yielding
            `(images, labels)`, batched or not.
        test_data: the labelled images to classify, in the same forms.
        k: positive int, the number of neighbours (clamped to the size of the
            training set). Defaults to 200.
        temperature: positive float. Defaults to 0.1.
        batch_size: positive int, images per forward pass of the encoder (for
            arrays and unbatched datasets). Defaults to 256.
        num_classes: int >= 2, or `None` to take the largest label plus one.
        chunk_size: positive int, test images scored at once (see
            `knn_scores`). Defaults to 256.
        preprocessing: a callable applied to each batch of images before
            the encoder, or None: the evaluation transform of a given
            pretrainer or classifier, else the images as they are.

    Returns:
        A dict with `"top1"`, the fraction of test images whose class has the
        largest score, and, when there are more than 5 classes, `"top5"`, the
        fraction whose class is among the 5 largest scores (ties in favour of
        the lower class id).

    Raises:
        ValueError: if an argument has the wrong type, shape or range; if
            the first batch of `train_data` or `test_data` is not in the
            range the encoder reads images in (see `check_image_range`),
            before any feature is computed.

    Example:

    ```python
    result = keras_simclr.evaluation.knn_accuracy(
        pretrainer, (train_images, train_labels), (test_images, test_labels),
    )
    print(result["top1"], result["top5"])
    ```

    References:
        - [Wu et al., 2018](https://arxiv.org/abs/1805.01978), InstDisc.
    """
    _check_knn_arguments(k, temperature, chunk_size)
    _validation.check_num_classes(num_classes, allow_none=True)
    _validation.check_int(batch_size, "batch_size")
    # Both sets are checked before any features are computed.
    for data, name in ((train_data, "train_data"), (test_data, "test_data")):
        check_image_range(
            encoder, data, name, preprocessing=preprocessing, batch_size=batch_size
        )
    encoder, preprocessing = resolve_encoder(encoder, preprocessing)
    train_features, train_labels = _extract_features(
        encoder, train_data, batch_size, "train_data", preprocessing
    )
    test_features, test_labels = _extract_features(
        encoder, test_data, batch_size, "test_data", preprocessing
    )
    num_classes = resolve_num_classes(num_classes, train_labels, test_labels)
    scores = knn_scores(
        train_features,
        train_labels,
        test_features,
        num_classes,
        k=k,
        temperature=temperature,
        chunk_size=chunk_size,
    )
    return top_k_accuracies(scores, test_labels)


def extract_features(
    encoder, data, batch_size=256, name="data", preprocessing=None
):
    """Features of labelled images by a frozen encoder.

    Each batch of images goes through `preprocessing` first, when there is
    one. Given a `SimCLRPretrainer` or a `SimCLRClassifier`, the features
    are those of its `encoder`, and `preprocessing` defaults to its
    `evaluation_views`, the evaluation transform that its own inference
    applies: images at the view size pass unchanged, images of another size
    get the augmentation's `training=False` transform (for the `"imagenet"`
    preset, a centre crop of 87.5% resized bicubically to the view size; for
    `"cifar"`, the whole image resized bilinearly). A bare encoder takes the
    images as they are, unless `preprocessing` is given.

    The encoder runs with `training=False`. A Keras model runs through its
    compiled `predict_on_batch`, each batch padded (by repeating its last
    image) to `batch_size` and, under a JAX data-parallel distribution, to a
    multiple of the number of devices; the padding is dropped from the
    features. Another layer is called directly.

    Args:
        encoder: a `SimCLRPretrainer` or `SimCLRClassifier`, or a Keras
            model or layer from images to feature vectors `(N, F)`.
        data: a tuple `(images, labels)` of arrays, or a `tf.data.Dataset`
            yielding `(images, labels)`, batched or not.
        batch_size: positive int, images per forward pass (for arrays and
            unbatched datasets). Defaults to 256.
        name: the name of `data` in error messages.
        preprocessing: a callable from a batch of images to the encoder's
            input (such as `pretrainer.evaluation_views`), or None (see
            above).

    Returns:
        A tuple `(features, labels)`: a float32 NumPy array `(N, F)` and an
        int64 NumPy array `(N,)`.

    Raises:
        ValueError: if `encoder` is not a Keras layer, `preprocessing` is
            neither callable nor None, `data` is not one of the accepted
            forms, the labels are not non-negative integers, the first
            batch of images is not in the range the encoder reads them in
            (see `check_image_range`), or the encoder does not give one
            feature vector per image.

    Example:

    ```python
    features, labels = keras_simclr.evaluation.extract_features(
        pretrainer, (images, labels), batch_size=512
    )
    ```
    """
    _validation.check_int(batch_size, "batch_size")
    check_image_range(
        encoder, data, name, preprocessing=preprocessing, batch_size=batch_size
    )
    encoder, preprocessing = resolve_encoder(encoder, preprocessing)
    return _extract_features(encoder, data, batch_size, name, preprocessing)


def _extract_features(encoder, data, batch_size, name, preprocessing):
    """`extract_features` of a bare encoder, once the data are checked."""
    features, labels = [], []
    # The first batch was checked; the encoder does not check each one.
    with data_layer.inputs_checked():
        for images, batch_labels in iterate_batches(data, batch_size, name):
            inputs = images
            if preprocessing is not None:
                inputs = ops.convert_to_numpy(preprocessing(images))
            batch_features = _encode_batch(encoder, inputs, batch_size)
            if batch_features.ndim != 2 or len(batch_features) != len(images):
                raise ValueError(
                    "`encoder` must map a batch of images to feature vectors "
                    f"(N, F); for {len(images)} images it gave shape "
                    f"{batch_features.shape}. For a keras.applications model, "
                    "use include_top=False and pooling='avg'."
                )
            features.append(batch_features)
            labels.append(batch_labels)
    if not features:
        raise ValueError(f"`{name}` holds no images.")
    return np.concatenate(features), np.concatenate(labels)


def check_image_range(encoder, data, name, preprocessing=None, batch_size=256):
    """Checks the first batch of `data` against the range the encoder reads
    images in, before any feature is computed.

    The images that reach the encoder (after `preprocessing`, or the
    evaluation transform of a pretrainer or classifier, which keeps the
    range) are checked with the rule of
    `keras_simclr.layers.data_layer.check_value_range` against the range
    the model declares: the encoder's `value_range` (the library's
    ResNet), else that of the augmentation it was pretrained with.
    Nothing is checked when neither declares one.

    Args:
        encoder: as for `knn_accuracy`: a `SimCLRPretrainer`, a
            `SimCLRClassifier`, or a Keras model or layer.
        data: `(images, labels)` arrays or a `tf.data` dataset of them.
        name: the name of `data` in messages.
        preprocessing: the user's preprocessing, or None.
        batch_size: positive int, the images of the first batch.

    Raises:
        ValueError: if the first batch is outside that range, or scaled
            down to `[0, 1]` or `[-1, 1]` for a range above 1, naming
            `name` and what declares the range.
    """
    check_encoder(encoder)
    words = f"the {encoder.noun}" if _has_encoder(encoder) else "the encoder"
    value_range, owner = data_layer.inference_value_range(encoder, words)
    if value_range is None:
        return
    argument = f"{name}[0]" if isinstance(data, (tuple, list)) else name
    own_preprocessing = preprocessing is not None
    _, preprocessing = resolve_encoder(encoder, preprocessing)
    for images, _ in iterate_batches(data, batch_size, name):
        if preprocessing is not None:
            images = ops.convert_to_numpy(preprocessing(images))
            if own_preprocessing:
                argument = f"preprocessing({argument})"
        data_layer.check_value_range(images, value_range, argument, owner)
        return


def check_data(data, name):
    """Checks the form of `(images, labels)` data without reading a dataset;
    returns the labels of array data (else `None`)."""
    if _data_checks.is_tf_dataset(data):
        spec = data.element_spec
        if not (isinstance(spec, tuple) and len(spec) == 2):
            raise ValueError(
                f"`{name}` must yield `(images, labels)` pairs. "
                f"Received: a dataset with element_spec={spec}"
            )
        return None
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(
            f"`{name}` must be a tuple `(images, labels)` of arrays or a "
            "tf.data.Dataset yielding such pairs. Received: "
            f"{name} of type {type(data).__name__}"
        )
    images, labels = data
    if not hasattr(images, "shape") or len(images.shape) < 2:
        raise ValueError(
            f"`{name}[0]` must be an array of images with a batch axis. "
            f"Received: {name}[0] of type {type(images).__name__} with shape "
            f"{getattr(images, 'shape', None)}"
        )
    return _data_checks.class_ids(labels, f"{name}[1]", num_images=images.shape[0])


def iterate_batches(data, batch_size, name):
    """Yields `(images, labels)` NumPy batches of `(images, labels)` data."""
    array_labels = check_data(data, name)
    if array_labels is not None:
        images = data[0]
        for start in range(0, len(array_labels), batch_size):
            yield (
                _data_checks.to_numpy(images[start : start + batch_size]),
                array_labels[start : start + batch_size],
            )
        return
    if data.element_spec[1].shape.rank == 0:
        data = data.batch(batch_size)
    for images, labels in data.as_numpy_iterator():
        yield images, _data_checks.class_ids(labels, f"{name} labels")


def resolve_num_classes(num_classes, train_labels, test_labels):
    """`num_classes`, or the largest label plus one when it is `None`; checks
    that every label is below it."""
    if not len(train_labels) or not len(test_labels):
        raise ValueError(
            "The training and the test data must each hold at least one "
            f"image. Received: {len(train_labels)} training and "
            f"{len(test_labels)} test labels"
        )
    largest = max(int(train_labels.max()), int(test_labels.max()))
    if num_classes is None:
        return max(largest + 1, 2)
    _data_checks.check_class_id_range(train_labels, "train labels", num_classes)
    _data_checks.check_class_id_range(test_labels, "test labels", num_classes)
    return num_classes


def top_k_accuracies(scores, labels):
    """`{"top1": ...}`, plus `"top5"` with more than 5 classes, of class
    `scores` `(N, C)`; ties go to the lower class id."""
    order = np.argsort(-scores, axis=1, kind="stable")
    hits = order == labels[:, None]
    result = {"top1": float(np.mean(hits[:, 0]))}
    if scores.shape[1] > 5:
        result["top5"] = float(np.mean(np.any(hits[:, :5], axis=1)))
    return result


def check_encoder(encoder):
    """Refuses an `encoder` that is not a Keras layer."""
    _validation.check_layer(
        encoder,
        "encoder",
        description="a Keras model or layer that maps images to feature vectors",
    )


def check_preprocessing(preprocessing):
    """Refuses a `preprocessing` that is neither callable nor None."""
    if preprocessing is not None and not callable(preprocessing):
        raise ValueError(
            "`preprocessing` must be a callable from a batch of images to the "
            "encoder's input, or None. Received: "
            f"preprocessing={preprocessing!r}"
        )


def resolve_encoder(encoder, preprocessing):
    """`(encoder, preprocessing)` to compute features with: a
    `SimCLRPretrainer` or `SimCLRClassifier` gives its `encoder` and, unless
    `preprocessing` is given, its `evaluation_views`; a bare encoder comes
    back with `preprocessing` as given."""
    check_encoder(encoder)
    check_preprocessing(preprocessing)
    if _has_encoder(encoder):
        if preprocessing is None:
            preprocessing = encoder.evaluation_views
        encoder = encoder.encoder
    return encoder, preprocessing


def _has_encoder(model):
    """Whether `model` is a task that computes features with an encoder of
    its own (a pretrainer, a classifier), seen through its evaluation
    transform."""
    return isinstance(model, Task) and isinstance(
        getattr(model, "encoder", None), keras.layers.Layer
    )


def _check_knn_arguments(k, temperature, chunk_size):
    _validation.check_int(k, "k")
    _validation.check_positive_number(temperature, "temperature")
    _validation.check_int(chunk_size, "chunk_size")


def _score_chunk(train, labels, queries, temperature, k, num_classes):
    """Normalised class weights `(Q, num_classes)` of a chunk of normalised
    queries among the normalised training features."""
    similarities = ops.matmul(queries, ops.transpose(train))
    values, indices = _top_k_lowest_index_first(similarities, k)
    largest = ops.max(values, axis=1, keepdims=True)
    weights = ops.exp((values - largest) / temperature)
    # Sum the weights per (query, class) pair: memory grows with
    # chunk * (k + num_classes), not chunk * k * num_classes.
    num_queries = queries.shape[0]
    rows = ops.arange(num_queries, dtype="int32")[:, None]
    segments = rows * num_classes + ops.take(labels, indices)
    class_weights = ops.segment_sum(
        ops.reshape(weights, (-1,)),
        ops.reshape(segments, (-1,)),
        num_segments=num_queries * num_classes,
    )
    class_weights = ops.reshape(class_weights, (num_queries, num_classes))
    return class_weights / ops.sum(class_weights, axis=1, keepdims=True)


_SCORERS = {}


def _compiled_score_chunk():
    """`_score_chunk`, compiled once per shape on JAX.

    Eager JAX compiles every op for every new shape; one program per chunk
    shape is much faster. TensorFlow and PyTorch run the ops eagerly.
    """
    backend = keras.backend.backend()
    if backend not in _SCORERS:
        scorer = _score_chunk
        if backend == "jax":
            import jax

            scorer = jax.jit(_score_chunk, static_argnums=(4, 5))
        _SCORERS[backend] = scorer
    return _SCORERS[backend]


def _top_k_lowest_index_first(similarities, k):
    """`ops.top_k` of each row, with ties at the `k`-th place going to the
    lower indices (`torch.topk` leaves them unspecified)."""
    # The smallest of the top k (not a slice of them: XLA on CPU replaces a
    # top_k whose output is sliced by a much slower full sort).
    kth = ops.min(ops.top_k(similarities, k)[0], axis=1, keepdims=True)
    above = similarities > kth
    tied = similarities == kth
    # How many of the entries tied at the k-th value are taken (at least 1).
    room = k - ops.sum(ops.cast(above, "int32"), axis=1, keepdims=True)
    size = similarities.shape[1]
    # Float positions, exact below 2**24: on CPU, XLA sorts whole rows for
    # an integer top_k, and uses its fast top_k for floats only.
    positions = ops.arange(size, dtype="float32")[None, :]
    # The indices of the tied entries, lowest first (the others count as
    # `size`), of which the first `room` are taken.
    tied_indices = -ops.top_k(ops.where(tied, -positions, -float(size)), k)[0]
    taken = ops.arange(k, dtype="int32")[None, :] < room
    last_taken = ops.max(
        ops.where(taken, tied_indices, -1.0), axis=1, keepdims=True
    )
    chosen = ops.logical_or(
        above, ops.logical_and(tied, positions <= last_taken)
    )
    # Exactly k entries are finite, so the second top_k takes just them.
    candidates = ops.where(chosen, similarities, float("-inf"))
    return ops.top_k(candidates, k)


def _l2_normalize(features):
    # In NumPy, by a division by the square root (both correctly rounded):
    # identical rows give identical results, so duplicated features tie
    # exactly, on every backend.
    squared_norm = np.sum(np.square(features), axis=-1, keepdims=True)
    return features / np.sqrt(np.maximum(squared_norm, np.float32(1e-24)))


def _encode_batch(encoder, images, batch_size):
    if not isinstance(encoder, keras.Model):
        features = encoder(images, training=False)
        return ops.convert_to_numpy(ops.cast(features, "float32"))
    # A smaller (last) batch is padded to the full size, so the compiled
    # predict function is not traced again for it; under a JAX data-parallel
    # distribution, to a multiple of the number of devices.
    devices = 1
    if keras.backend.backend() == "jax":
        devices = distribute.num_data_parallel_devices()
    size = len(images)
    padded_size = max(size, batch_size)
    padded_size += -padded_size % devices
    if padded_size > size:
        images = np.concatenate(
            [images, np.repeat(images[-1:], padded_size - size, axis=0)]
        )
    features = encoder.predict_on_batch(images)
    return np.asarray(features).astype("float32")[:size]


def _as_features(features, name):
    features = _data_checks.to_numpy(features)
    if features.ndim != 2 or features.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` must be a 2-D array of numbers (N, F). Received: "
            f"{name}.shape={features.shape}, dtype={features.dtype}"
        )
    features = features.astype("float32")
    if not np.all(np.isfinite(features)):
        raise ValueError(
            f"`{name}` must hold finite numbers. Received: {name} with "
            f"{np.sum(~np.isfinite(features))} NaN or infinite values"
        )
    return features
