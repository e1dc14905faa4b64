"""Logs the weighted kNN accuracy of the encoder during training."""

import math

import keras
import numpy as np

from keras_simclr import _data_checks
from keras_simclr import _validation
from keras_simclr.evaluation import knn as knn_lib


class KNNMonitor(keras.callbacks.Callback):
    """Adds the weighted kNN accuracy of the encoder to the epoch logs.

    Every `every_n_epochs` epochs, and on the last epoch, computes
    `keras_simclr.evaluation.knn_accuracy` of the encoder: features of
    `train_data` and `test_data` with `training=False`, and each test image
    classified by a weighted vote of its `k` nearest training features (the
    InstDisc protocol that solo-learn and lightly use to follow
    self-supervised training). The result goes into the `logs` of
    `on_epoch_end` as `knn_accuracy` (top-1) and, with more than 5 classes,
    `knn_top5`, so it is printed by the progress bar and recorded by `History`
    (`fit(...).history["knn_accuracy"]`) with the other metrics.

    On the epochs in between, both keys hold NaN, so that every epoch's logs
    have the same keys: `History`'s lists stay aligned with the epochs, and
    `keras.callbacks.CSVLogger` (which fixes its columns at the first epoch)
    keeps the column. For the same reason, `EarlyStopping` or
    `ModelCheckpoint` that monitor `knn_accuracy` should use
    `every_n_epochs=1`: a NaN never counts as an improvement.

    The last epoch is the one numbered `epochs - 1`, or one at whose end
    `model.stop_training` is already set (e.g. by `StopAtStep`).

    Callback order: Keras calls every callback's `on_epoch_end` in list order
    with one shared `logs` dict. `History` and the progress bar are appended
    by `fit()` after the callbacks you pass, so they always see the keys;
    `TensorBoard`, `CSVLogger`, `EarlyStopping`, `ModelCheckpoint` and other
    callbacks that read `knn_accuracy` must come after `KNNMonitor` in the
    `callbacks` list.

    The encoder is `model.encoder` (as `SimCLRPretrainer` has) unless one is
    passed. Images reach it as they reach the model's encoder at inference:
    through `preprocessing` when given, else, when the encoder is the
    model's own (`encoder=None`, or `model.encoder` itself), through the
    model's `evaluation_views` when it has one (a `SimCLRPretrainer`'s
    evaluation transform: images at the view size pass unchanged, others
    get the augmentation's `training=False` transform, for the `"imagenet"`
    preset a centre crop of 87.5% resized bicubically to the view size);
    another encoder passed without `preprocessing` takes the images as they
    are. Computing the features costs a forward pass over both sets; a
    few thousand labelled images are usually enough to follow training.

    Args:
        train_data: labelled images the neighbours come from: a tuple
            `(images, labels)` of arrays, or a `tf.data.Dataset` yielding
            `(images, labels)`, batched or not.
        test_data: the labelled images to classify, in the same forms.
        encoder: a Keras model or layer from images to feature vectors, or
            `None` to use the trained model's `encoder` attribute.
        every_n_epochs: positive int; evaluate after epochs `n - 1`,
            `2n - 1`, ... (0-based) and after the last. Defaults to 1.
        k: positive int, the number of neighbours (clamped to the size of the
            training set). Defaults to 200.
        temperature: positive float, the temperature of the weights
            `exp(similarity / temperature)`. Defaults to 0.1.
        batch_size: positive int, images per forward pass of the encoder.
            Defaults to 256.
        num_classes: int >= 2, or `None` for the largest label plus one
            (found when training begins; for datasets that takes a pass over
            their labels).
        chunk_size: positive int, test images scored at once. Defaults to
            256.
        preprocessing: a callable from a batch of images to the encoder's
            input, or None (see above).

    Attributes:
        results: dict from each evaluated epoch (0-based) of the last `fit()`
            to its result, `{"top1": ..., "top5": ...}`.

    Raises:
        ValueError: if an argument is invalid, or, when training begins, if
            no `encoder` was given and the model has no `encoder` attribute,
            or if the first batch of `train_data` or `test_data` is not in
            the range the encoder reads images in (its `value_range`, else
            the model's augmentation's; see
            `keras_simclr.evaluation.knn.check_image_range`).

    Example:

    ```python
    monitor = keras_simclr.callbacks.KNNMonitor(
        (train_images[:5000], train_labels[:5000]),
        (test_images, test_labels),
        every_n_epochs=5,
    )
    history = pretrainer.fit(
        train_images, epochs=100,
        callbacks=[monitor, keras.callbacks.CSVLogger("log.csv")],
    )
    history.history["knn_accuracy"]  # NaN except every 5th epoch and the last
    ```

    References:
        - [Wu et al., 2018](https://arxiv.org/abs/1805.01978), InstDisc.
    """

    def __init__(
        self,
        train_data,
        test_data,
        encoder=None,
        every_n_epochs=1,
        k=200,
        temperature=0.1,
        batch_size=256,
        num_classes=None,
        chunk_size=256,
        preprocessing=None,
    ):
        super().__init__()
        knn_lib.check_data(train_data, "train_data")
        knn_lib.check_data(test_data, "test_data")
        if encoder is not None:
            knn_lib.check_encoder(encoder)
        _validation.check_int(every_n_epochs, "every_n_epochs")
        _validation.check_int(k, "k")
        _validation.check_positive_number(temperature, "temperature")
        _validation.check_int(batch_size, "batch_size")
        _validation.check_num_classes(num_classes, allow_none=True)
        _validation.check_int(chunk_size, "chunk_size")
        knn_lib.check_preprocessing(preprocessing)
        self.train_data = train_data
        self.test_data = test_data
        self.encoder = encoder
        self.every_n_epochs = every_n_epochs
        self.k = k
        self.temperature = temperature
        self.batch_size = batch_size
        self.num_classes = num_classes
        self.chunk_size = chunk_size
        self.preprocessing = preprocessing
        self.results = {}
        self._num_classes = num_classes
        self._encoder = encoder
        self._preprocessing = preprocessing

    def on_train_begin(self, logs=None):
        self.results = {}
        self._encoder = self.encoder
        self._preprocessing = self.preprocessing
        model_encoder = getattr(self.model, "encoder", None)
        if self._encoder is None:
            self._encoder = model_encoder
            if not isinstance(self._encoder, keras.layers.Layer):
                raise ValueError(
                    "KNNMonitor needs an encoder: the model has no `encoder` "
                    "attribute that is a Keras layer, so pass one with "
                    "`KNNMonitor(..., encoder=...)`. Received: a model of "
                    f"type {type(self.model).__name__}"
                )
        own_encoder = self._encoder is model_encoder
        if self._preprocessing is None and own_encoder:
            self._preprocessing = getattr(self.model, "evaluation_views", None)
        # Images on another scale than the training views would give a
        # wrong accuracy every epoch: refused before the first one.
        source = self.model if own_encoder else self._encoder
        sets = ((self.train_data, "train_data"), (self.test_data, "test_data"))
        for data, name in sets:
            knn_lib.check_image_range(
                source,
                data,
                name,
                preprocessing=self.preprocessing,
                batch_size=self.batch_size,
            )
        if self._num_classes is None:
            self._num_classes = knn_lib.resolve_num_classes(
                None, self._labels(self.train_data), self._labels(self.test_data)
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        keys = ["knn_accuracy"] + (["knn_top5"] if self._num_classes > 5 else [])
        if not self._is_evaluated(epoch):
            for key in keys:
                logs[key] = math.nan
            return
        result = knn_lib.knn_accuracy(
            self._encoder,
            self.train_data,
            self.test_data,
            k=self.k,
            temperature=self.temperature,
            batch_size=self.batch_size,
            num_classes=self._num_classes,
            chunk_size=self.chunk_size,
            preprocessing=self._preprocessing,
        )
        self.results[epoch] = result
        logs["knn_accuracy"] = result["top1"]
        if "top5" in result:
            logs["knn_top5"] = result["top5"]

    def _is_evaluated(self, epoch):
        last_epoch = (self.params or {}).get("epochs")
        return (
            (epoch + 1) % self.every_n_epochs == 0
            or (last_epoch is not None and epoch + 1 >= last_epoch)
            or bool(getattr(self.model, "stop_training", False))
        )

    def _labels(self, data):
        labels = knn_lib.check_data(data, "data")
        if labels is not None:
            return labels
        batches = data.map(lambda images, labels: labels).as_numpy_iterator()
        return _data_checks.class_ids(
            np.concatenate(
                [np.zeros((0,), "int64")]
                + [np.reshape(batch, (-1,)) for batch in batches]
            ),
            "dataset labels",
        )
