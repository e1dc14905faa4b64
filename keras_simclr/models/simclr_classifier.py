"""A classifier on a SimCLR encoder: linear evaluation and fine-tuning."""

import inspect

import keras
from keras import ops

from keras_simclr import _evaluation_transform
from keras_simclr import _validation
from keras_simclr.layers.projection_head import ProjectionHead
from keras_simclr.models._frozen_parts import FrozenPartsMixin
from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer
from keras_simclr.models.task import Task

MODES = ("finetune", "linear")


@keras.saving.register_keras_serializable(package="keras_simclr")
class SimCLRClassifier(FrozenPartsMixin, Task):
    """A linear classifier on a (pre)trained encoder, for evaluation or
    fine-tuning, as in SimCLR v1 and v2.

    The classifier computes `logits = Dense(num_classes)(h)`, where `h` is
    the encoder's feature vector (`head_layers=0`, SimCLR v1) or the output
    of the first `head_layers` layers of the projection head on top of it
    (SimCLR v2 fine-tunes from the first layer of its 3-layer head,
    `head_layers=1`: each kept layer is Dense + batch norm + ReLU, the
    official `ft_proj_selector`). The later layers of the head are not run,
    trained or counted among this model's weights.

    Two modes:
    - `"linear"`, linear evaluation: the encoder and the kept head layers
      are frozen inside this model (they are left out of its
      `trainable_variables`, their own `trainable` flags are not touched)
      and always run in inference mode, batch norm included, with the
      gradient stopped; only the final Dense layer trains.
    - `"finetune"`: everything trains (except what was frozen beforehand,
      e.g. the first blocks of the encoder, as the official
      `fine_tune_after_block`), batch norm in training mode during `fit`.

    The final Dense layer starts at zero (kernel and bias), as the official
    fine-tuning and linear-evaluation commands do
    (`--zero_init_logits_layer=True`); its gradient with respect to the
    kernel is the features times the softmax error, so it moves from the
    first step, and the layers below follow from the second.

    Built from a `SimCLRPretrainer`, the classifier holds the pretrainer's
    own encoder and projection head objects, not copies: fine-tuning moves
    the pretrainer's weights too. Building a classifier changes nothing in
    the pretrainer: after linear evaluation, a fine-tuning classifier or
    more pretraining train what they would have trained before. Saving the
    classifier alone (`classifier.save("model.keras")`) is enough to
    restore it: the encoder and the whole projection head (its unused
    layers too) are saved within it.

    `call(images)` returns logits `(batch, num_classes)`: compile with a
    loss `from_logits=True`, or let `compile()` fill in its defaults.

    Evaluation transform: at inference (`training=False`: `predict`,
    `evaluate`, `export_outputs`, a call without `training=True`), images
    go through `evaluation_views` first, as the pretrainer's do: images
    whose height and width equal the view size of `evaluation_transform`
    pass unchanged, images of another size get its inference call
    (`training=False`). Built from a `SimCLRPretrainer`, the transform is
    the pretrainer's (its augmentation's, e.g. for the `"imagenet"` preset
    a centre crop of 87.5% of the image resized bicubically to the view
    size, as the official SimCLR evaluation). Training steps take the
    images as given, as before: augment them in the input pipeline. The
    transform is saved with the classifier and restored with it.

    Args:
        pretrainer_or_encoder: a `keras_simclr.models.SimCLRPretrainer`,
            whose `encoder` and `projection_head` are used; or any Keras
            model or layer that maps images to feature vectors `(N, F)`.
        num_classes: integer >= 2, the number of classes.
        head_layers: integer, how many layers of the projection head to
            keep under the classifier: 0 (default) classifies the encoder
            features; 1 is SimCLR v2's choice; at most the number of layers
            of the head.
        projection_head: a `keras_simclr.layers.ProjectionHead`, needed
            when `head_layers > 0` and `pretrainer_or_encoder` is an
            encoder; not accepted with a pretrainer (its own head is used)
            or with `head_layers=0`.
        mode: `"finetune"` (default) or `"linear"`, see above.
        dropout: float in [0, 1), dropout rate on the classifier's input
            during training; 0 (default) as the official code.
        evaluation_transform: a Keras layer whose inference call
            (`training=False`) maps images of any size to the encoder's
            input, such as a `keras_simclr.layers.SimCLRAugmentation`; or
            None (default): the pretrainer's `evaluation_transform` when
            `pretrainer_or_encoder` is a pretrainer, else no transform.
        **kwargs: passed to `keras.Model` (name, dtype, ...).

    Call arguments:
        images: a batch of images, as the encoder takes them, or, at
            inference, of any size the evaluation transform takes.
        training: whether the model runs in training mode (batch norm
            statistics, dropout). In `"linear"` mode the encoder and the
            head always run in inference mode.

    Returns:
        The logits, `(batch, num_classes)`.

    Raises:
        ValueError: if an argument is invalid, naming the argument.

    Example:

    ```python
    pretrainer = keras_simclr.models.SimCLRPretrainer(
        encoder=keras_simclr.models.ResNet(18, cifar_stem=True),
        augmentation=keras_simclr.layers.SimCLRAugmentation(32, preset="cifar"),
        projection_head=keras_simclr.layers.ProjectionHead(num_layers=3),
    )
    ...  # pretrainer.fit(unlabeled_images, ...): uint8 images, (N, 32, 32, 3)
    classifier = keras_simclr.models.SimCLRClassifier(
        pretrainer, num_classes=10, head_layers=1, mode="finetune"
    )
    classifier.compile()  # SGD with momentum, cross-entropy, accuracy
    classifier.fit(images, labels, batch_size=256, epochs=30)
    outputs = classifier.export_outputs(images)  # features, head_features, logits
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          linear evaluation protocol.
        - [Chen et al., 2020](https://arxiv.org/abs/2006.10029), SimCLR v2,
          fine-tuning from a middle layer of the projection head.
    """

    config_layers = {
        "pretrainer_or_encoder": "encoder",
        "projection_head": "projection_head",
        "evaluation_transform": "evaluation_transform",
    }
    noun = "classifier"

    def __init__(
        self,
        pretrainer_or_encoder,
        num_classes,
        head_layers=0,
        projection_head=None,
        mode="finetune",
        dropout=0.0,
        evaluation_transform=None,
        **kwargs,
    ):
        # Applied once the sublayers exist (a config restores it here).
        trainable = kwargs.pop("trainable", True)
        super().__init__(**kwargs)
        _validation.check_layer(
            pretrainer_or_encoder,
            "pretrainer_or_encoder",
            description="a SimCLRPretrainer, or a Keras model or layer that maps "
            "images to feature vectors",
        )
        _validation.check_layer(
            evaluation_transform, "evaluation_transform", allow_none=True
        )
        encoder = pretrainer_or_encoder
        if isinstance(pretrainer_or_encoder, SimCLRPretrainer):
            if evaluation_transform is None:
                evaluation_transform = pretrainer_or_encoder.evaluation_transform
            if projection_head is not None:
                raise ValueError(
                    "`projection_head` cannot be given with a pretrainer: the "
                    "pretrainer's own head is used. Received: "
                    f"projection_head={projection_head!r}"
                )
            encoder = pretrainer_or_encoder.encoder
            if head_layers:
                projection_head = pretrainer_or_encoder.projection_head
        num_classes = _validation.check_num_classes(num_classes)
        mode = _validation.check_choice(mode, "mode", MODES)
        dropout = _validation.check_number(
            dropout, "dropout", minimum=0, maximum=1, include_maximum=False
        )
        head_layers = _validation.check_int(head_layers, "head_layers", minimum=0)
        if head_layers == 0 and projection_head is not None:
            raise ValueError(
                "`projection_head` is only used with `head_layers` > 0. "
                f"Received: head_layers=0, projection_head={projection_head!r}"
            )
        if head_layers > 0:
            if projection_head is None:
                raise ValueError(
                    "`head_layers` > 0 needs a projection head: give a "
                    "SimCLRPretrainer, or pass `projection_head`. "
                    f"Received: head_layers={head_layers}, projection_head=None"
                )
            if not isinstance(projection_head, ProjectionHead):
                raise ValueError(
                    "`head_layers` > 0 needs a keras_simclr.layers."
                    "ProjectionHead, whose layers can be run one by one. "
                    f"Received: projection_head={projection_head!r}"
                )
            if head_layers > projection_head.num_layers:
                raise ValueError(
                    "`head_layers` must be at most the number of layers of "
                    f"the projection head, {projection_head.num_layers}. "
                    f"Received: head_layers={head_layers}"
                )

        # === Layers ===
        self.encoder = encoder
        # The head object is held out of Keras's tracking and only its first
        # `head_layers` layers are tracked: the later ones, never run here,
        # would otherwise be trainable weights without gradients, drawing
        # optimizer slots, a warning on TensorFlow and PyTorch, and on JAX
        # (zero gradients) weight decay applied to the shared head.
        self._projection_head = _Untracked(projection_head)
        kept = range(head_layers)
        if projection_head is not None:
            self.head_dense_layers = [projection_head.dense_layers[i] for i in kept]
            self.head_batch_norm_layers = [
                projection_head.batch_norm_layers[i] for i in kept
            ]
        else:
            self.head_dense_layers = []
            self.head_batch_norm_layers = []
        self.dropout_layer = None
        if dropout > 0:
            self.dropout_layer = keras.layers.Dropout(
                dropout, dtype=self.dtype_policy, name="dropout"
            )
        self.linear_classifier = keras.layers.Dense(
            num_classes,
            kernel_initializer="zeros",
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="linear_classifier",
        )
        # The pretrainer's augmentation object itself, as the encoder; only
        # its inference call runs here.
        self.evaluation_transform = evaluation_transform
        if not trainable:
            freeze(self)

        # === Config ===
        self.num_classes = num_classes
        self.head_layers = head_layers
        self.mode = mode
        self.dropout = dropout

    def _frozen_layers(self):
        if getattr(self, "mode", None) != "linear":
            return []
        return (
            [self.encoder] + self.head_dense_layers + self.head_batch_norm_layers
        )

    @property
    def projection_head(self):
        """The whole projection head whose first `head_layers` layers are
        kept, or None when `head_layers=0`."""
        return self._projection_head.value

    # === Building ===

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if self.evaluation_transform is not None:
            if not self.evaluation_transform.built:
                self.evaluation_transform.build(input_shape)
            size = _evaluation_transform.view_size(
                self.evaluation_transform, input_shape
            )
            if size is not None and len(input_shape) == 4:
                input_shape = (input_shape[0], *size, input_shape[-1])
        if not self.encoder.built:
            self.encoder.build(input_shape)
        feature_shape = tuple(self.encoder.compute_output_shape(input_shape))
        if len(feature_shape) != 2:
            raise ValueError(
                "The encoder must map images to feature vectors (batch, "
                f"features); for input {input_shape} it gives {feature_shape}. "
                "For a keras.applications model, use include_top=False and "
                "pooling='avg'."
            )
        shape = feature_shape
        if self.projection_head is not None:
            if not self.projection_head.built:
                self.projection_head.build(feature_shape)
            for dense in self.head_dense_layers:
                shape = (shape[0], dense.units)
        if self.dropout_layer is not None and not self.dropout_layer.built:
            self.dropout_layer.build(shape)
        if not self.linear_classifier.built:
            self.linear_classifier.build(shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    # === Forward pass ===

    def _forward(self, images, training):
        # Linear evaluation runs the frozen layers in inference mode always.
        body_training = False if self.mode == "linear" else training
        features = self.encoder(images, training=body_training)
        outputs = {"features": features}
        hidden = features
        last = (
            self.projection_head.num_layers - 1
            if self.projection_head is not None
            else 0
        )
        for index, (dense, batch_norm) in enumerate(
            zip(self.head_dense_layers, self.head_batch_norm_layers)
        ):
            # The same computation as ProjectionHead.call, stopped early.
            hidden = batch_norm(dense(hidden), training=body_training)
            if index < last:
                hidden = ops.relu(hidden)
        if self.head_layers > 0:
            outputs["head_features"] = hidden
        if self.mode == "linear":
            hidden = ops.stop_gradient(hidden)
        if self.dropout_layer is not None:
            hidden = self.dropout_layer(hidden, training=training)
        outputs["logits"] = self.linear_classifier(hidden)
        return outputs

    def call(self, images, training=None):
        if not training:
            images = self.evaluation_views(images)
        return self._forward(images, training)["logits"]

    def export_outputs(self, images):
        """Inference outputs for export, as a dict, on
        `evaluation_views(images)`.

        Returns:
            `{"features": encoder output, "logits": logits}`, plus
            `"head_features"`, the output of the kept head layers (the
            classifier's input), when `head_layers > 0`.
        """
        if not self.built:
            self.build(tuple(images.shape))
        return self._forward(self.evaluation_views(images), training=False)

    # === Training entry points ===

    def default_optimizer(self):
        """SGD with Nesterov momentum 0.9 and learning rate 0.1, the
        official fine-tuning optimizer (`--optimizer=momentum`) at its
        linear-evaluation rate per 256 images; scale it to your batch."""
        return fine_tuning_optimizer()

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """Configures training, with defaults for each argument left "auto".

        Args:
            optimizer: `"auto"` for `default_optimizer()`: SGD with
                Nesterov momentum 0.9 and learning rate 0.1, the official
                fine-tuning optimizer (`--optimizer=momentum`) at its
                linear-evaluation rate per 256 images; scale it to your
                batch size. Or any optimizer.
            loss: `"auto"` for sparse categorical cross-entropy from logits.
                Or any loss that takes logits: the model outputs logits, so
                a loss that expects probabilities (`from_logits=False`,
                the default of Keras's cross-entropies and of their names
                such as `"sparse_categorical_crossentropy"`) is refused.
            metrics: `"auto"` for accuracy, plus top-5 accuracy when
                `num_classes > 5`.
            **kwargs: other arguments of `keras.Model.compile`.

        Raises:
            ValueError: if `loss` expects probabilities rather than logits.
        """
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        _check_loss_takes_logits(loss)
        # Class ids are checked before training when the loss takes them;
        # a user's own loss may take other labels (one-hot, soft).
        self._sparse_labels = isinstance(
            loss, keras.losses.SparseCategoricalCrossentropy
        ) or loss in ("sparse_categorical_crossentropy",
                      keras.losses.sparse_categorical_crossentropy)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
            if self.num_classes > 5:
                metrics.append(
                    keras.metrics.SparseTopKCategoricalAccuracy(
                        k=5, name="top_5_accuracy"
                    )
                )
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    @property
    def label_use(self):
        # Class ids are checked when the loss takes them; a user's own loss
        # may take labels of another form (one-hot, soft).
        return "required" if getattr(self, "_sparse_labels", False) else None

    # The labels are checked by the base; the images' range too, as the
    # pretrainer's: on another scale than in pretraining they would give
    # other features without a word.

    def _check_fit_data(self, x, y, batch_size, kwargs):
        checked = super()._check_fit_data(x, y, batch_size, kwargs)
        self._check_image_range(x, batch_size, kwargs.get("validation_data"))
        return checked

    def _check_evaluation_data(self, x, y, batch_size, kwargs):
        checked = super()._check_evaluation_data(x, y, batch_size, kwargs)
        self._check_image_range(x, batch_size)
        return checked

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "head_layers": self.head_layers,
                "mode": self.mode,
                "dropout": self.dropout,
            }
        )
        return config


def fine_tuning_optimizer():
    """The official fine-tuning optimizer (`--optimizer=momentum`): SGD with
    Nesterov momentum 0.9 at learning rate 0.1, the classifier's and the
    distiller's `compile("auto")`."""
    return keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)


def _check_loss_takes_logits(loss):
    """Refuses a loss that reads the logits as probabilities.

    Keras's cross-entropies default to `from_logits=False` and read their
    input as probabilities: on this model's logits the loss stays at
    ln(num_classes) or is NaN from the first step, and nothing trains,
    without an error.
    """
    if _expects_probabilities(loss):
        raise ValueError(
            "`loss` expects probabilities (from_logits=False), but "
            "SimCLRClassifier outputs logits: with it the loss stays at "
            "ln(num_classes) or becomes NaN and nothing trains. Pass "
            "`loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)` "
            "(or `CategoricalCrossentropy(from_logits=True)` for one-hot "
            f'labels), or leave loss="auto". Received: loss={loss!r}'
        )


def _expects_probabilities(loss):
    if isinstance(loss, (list, tuple)):
        return any(_expects_probabilities(item) for item in loss)
    if isinstance(loss, dict):
        return any(_expects_probabilities(item) for item in loss.values())
    if isinstance(loss, str):
        try:
            loss = keras.losses.get(loss)
        except (ValueError, TypeError):
            return False  # Not a Keras loss name: Keras's compile reports it.
    if isinstance(loss, keras.losses.Loss):
        try:
            return loss.get_config().get("from_logits") is False
        except (NotImplementedError, TypeError, AttributeError):
            return False
    if callable(loss):
        try:
            parameter = inspect.signature(loss).parameters.get("from_logits")
        except (TypeError, ValueError):
            return False
        return parameter is not None and parameter.default is False
    return False


def freeze(layer):
    """Sets `layer.trainable = False`, for the layer and all its sublayers.

    On the TensorFlow backend, assigning an attribute the value it already
    has is skipped, setter included, so `trainable = False` on a model
    already marked untrainable (as one restored from a config is, before
    its sublayers are made) would leave its sublayers trainable. Going
    through True makes the setter run.
    """
    layer.trainable = True
    layer.trainable = False


class _Untracked:
    """Holds an object out of Keras's automatic tracking of attributes."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value
