"""The base of the library's task models: what pretraining, fine-tuning and
distillation share."""

import contextlib
import copy

import keras
from keras import ops

from keras_simclr import _evaluation_transform
from keras_simclr import _graph_checks
from keras_simclr import _data_checks
from keras_simclr import distribute
from keras_simclr.layers import data_layer


class Task(keras.Model):
    """A model that trains one task on networks it is given: the base of
    `SimCLRPretrainer`, `SimCLRClassifier` and `SimCLRDistiller`.

    A task holds networks made elsewhere (an encoder, a projection head, a
    teacher) and adds what its task needs around them: the views it trains
    on, the evaluation transform, the loss, the metrics and the checks of
    its data. This base writes once what the three share:

    - **The evaluation transform.** `evaluation_views(images)` applies the
      task's `evaluation_transform` outside training: images whose height
      and width equal its view size pass unchanged, others get its
      inference call (for `SimCLRAugmentation`'s `"imagenet"` preset, a
      centre crop of 87.5% resized bicubically, as the official
      evaluation). `predict`, `evaluate`, export and the library's
      evaluation functions see images through it.
    - **Compiling.** `compile(optimizer="auto")` takes the task's
      `default_optimizer()`; a task that computes its own loss refuses a
      `loss`; a saved model's compiled state comes back through
      `compile_from_config`.
    - **`fit`, `evaluate` and `predict`**: the data is checked first (a
      `ValueError` naming the argument before any step), then the
      distribution context (each process's share of the data where the task
      trains across processes, a refusal where it cannot), then Keras's
      own loop.
    - **The step**: the loss a task computes itself is completed with the
      layers' added losses and scaled for `tf.distribute` replicas; its
      logs are made reducible across workers; across `torch.distributed`
      processes the library's step sums the gradients and reduces the
      metrics.
    - **Config**: `get_config` serialises the sub-layers named in
      `config_layers` and `from_config` rebuilds them.

    What each task declares:

    - `config_layers`: `{config key: attribute}` of its sub-layers.
    - `builtin_loss`: what the loss it computes is, in words, when it
      computes one in `compute_task_loss` (and refuses a `loss` in
      `compile`); None for a task compiled with a Keras loss.
    - `label_use`: how it uses labels given to `fit`: `"probe"` (they
      train an online probe, when there is one), `"optional"` (used when
      given), `"required"`, or None (not checked here: the loss reads
      them in a form of its own).
    - `trains_across_processes`: whether `fit` trains across the
      processes of a `torch.distributed` group or a JAX multi-process run,
      each on its share of the global batch; a task that does not refuses
      a PyTorch group rather than train each process alone.
    - `noun`: what messages call it (`"pretrainer"`).
    - `unweighted_reason`: why a task with its own loss takes no sample or
      class weights, for the message that refuses them.
    - `default_optimizer()`, `evaluation_transform` (an attribute or a
      property) and `export_outputs(images)`, the named outputs that
      `keras_simclr.export` serves.

    Hooks a task may override: `_check_fit_data` and
    `_check_evaluation_data` (each returns the data, possibly wrapped, to
    train or evaluate on), `_training_context()`, `_labels_num_classes(x)`
    and `_upgrade_config(config)` for configs of earlier releases.
    """

    config_layers = {}
    builtin_loss = None
    label_use = "optional"
    trains_across_processes = False
    noun = "model"
    unweighted_reason = "its loss weighs every image alike"
    # No class attribute `evaluation_transform`: on the PyTorch backend a
    # layer assigned to an instance is kept by `torch.nn.Module` where a
    # class attribute would shadow it.

    def default_optimizer(self):
        """The optimizer that `compile(optimizer="auto")` uses."""
        raise NotImplementedError(
            f"{type(self).__name__} must define default_optimizer()."
        )

    # === Evaluation transform and outputs ===

    def evaluation_views(self, images):
        """The inputs of the task's network for `images` outside training:
        unchanged at the view size of `evaluation_transform` (or without
        one), else its inference call (`training=False`).

        Args:
            images: a batch of images `(batch, height, width, channels)`.

        Returns:
            The batch at the view size.
        """
        return _evaluation_transform.apply(
            getattr(self, "evaluation_transform", None), images
        )

    def export_outputs(self, images):
        """The task's named inference outputs on `images`, a dict of
        tensors: what `keras_simclr.export` serves."""
        raise NotImplementedError(
            f"{type(self).__name__} must define export_outputs(images)."
        )

    # === Loss and metrics ===

    def compute_task_loss(self, x, y, y_pred, training):
        """The task's own loss, a scalar, for a task with a `builtin_loss`."""
        raise NotImplementedError(
            f"{type(self).__name__} must define compute_task_loss()."
        )

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if self.builtin_loss is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        if sample_weight is not None:
            raise ValueError(self._weights_message("sample_weight", sample_weight))
        total = ops.cast(self.compute_task_loss(x, y, y_pred, training), "float32")
        for extra in self.losses:
            total = total + ops.cast(ops.sum(extra), "float32")
        # The replicas' gradients are summed: each contributes 1/R of its loss.
        return distribute.scale_loss(total)

    def _weights_message(self, name, value):
        shown = getattr(value, "shape", None)
        shown = tuple(shown) if shown is not None else repr(value)
        if isinstance(shown, str) and len(shown) > 200:
            shown = shown[:200] + "..."
        return (
            f"{type(self).__name__} does not take {name.replace('_', ' ')}s: "
            f"{self.unweighted_reason}. Received: {name}={shown}"
        )

    def _refuse_weights(self, kwargs):
        """Refuses sample and class weights for a task with its own loss:
        Keras drops them without a word when `y` is None, and turns class
        weights into sample weights."""
        if self.builtin_loss is None:
            return
        for name in ("class_weight", "sample_weight"):
            if kwargs.get(name) is not None:
                raise ValueError(self._weights_message(name, kwargs[name]))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        return distribute.reducible_logs(self, logs)

    def get_metrics_result(self):
        # Keras reads the metrics both for each step's logs and for the
        # epoch's: with several torch processes, over all their data.
        return distribute.metrics_result(self, super().get_metrics_result)

    # The backends' steps take different arguments (JAX: `state, data`).
    def train_step(self, *args):
        if self.trains_across_processes and distribute.torch_process_count() > 1:
            return distribute.torch_train_step(self, *args)
        return super().train_step(*args)

    def test_step(self, *args):
        if self.trains_across_processes and distribute.torch_process_count() > 1:
            return distribute.torch_test_step(self, *args)
        return super().test_step(*args)

    # === Compiling ===

    def compile(self, optimizer="auto", loss=None, **kwargs):
        """Configures training.

        Args:
            optimizer: `"auto"` (default) for the task's
                `default_optimizer()`, or any Keras optimizer.
            loss: not accepted by a task that computes its own loss.
            **kwargs: other arguments of `keras.Model.compile`.
        """
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = self.default_optimizer()
        if self.builtin_loss is not None and loss is not None:
            raise ValueError(
                f"{type(self).__name__} computes its own {self.builtin_loss}; "
                f"do not pass `loss`. Received: loss={loss!r}"
            )
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        # `compile` is overridden (for its defaults), so Keras leaves
        # restoring the compiled state, the optimizer's variables included,
        # to the model.
        config = keras.saving.deserialize_keras_object(config)
        if self.builtin_loss is not None:
            config.pop("loss", None)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # === Training entry points ===

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        self._refuse_weights(kwargs)
        x, y, batch_size, kwargs = self._check_fit_data(x, y, batch_size, kwargs)
        if not self.trains_across_processes:
            distribute.check_supported(self)
        elif distribute.process_count() > 1:
            x, y, batch_size, kwargs = self._per_process_data(
                x, y, batch_size, kwargs
            )
        with _graph_checks.as_value_errors(), self._training_context():
            return super().fit(x, y, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        self._refuse_weights(kwargs)
        x, y = self._check_evaluation_data(x, y, batch_size, kwargs)
        if self.trains_across_processes and distribute.process_count() > 1:
            # Each process evaluates its share of every global batch.
            x, y, batch_size = distribute.per_process_data(
                x, y, batch_size, shuffle=False, evaluation=True
            )
        if not _data_checks.is_tf_dataset(x):
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)
        # On JAX, Keras's evaluate() lifts the variables' values out of the
        # model (and donates their buffers to the compiled step) and puts
        # them back only when it ends normally: an error from the pipeline
        # would leave the model without weights. evaluate() changes no model
        # variable, so copies are kept to put back.
        saved = []
        if keras.backend.backend() == "jax":
            saved = [(v, ops.copy(v.value)) for v in self.variables]
        try:
            with _graph_checks.as_value_errors():
                return super().evaluate(x, y, batch_size=batch_size, **kwargs)
        except BaseException:
            for variable, value in saved:
                variable.assign(value)
            raise

    def predict(self, x, batch_size=None, *args, **kwargs):
        """Keras's `predict`, after checking the images' range.

        The first batch of arrays, tensors or a `tf.data` dataset is checked
        against the range the task reads images in (its encoder's
        `value_range`, else its augmentation's or evaluation transform's)
        with the rule of `keras_simclr.layers.data_layer.check_value_range`,
        so that images on another scale than in training (`x / 255.` after
        training on uint8 images) raise a `ValueError` instead of moved
        outputs.
        """
        self._check_image_range(x, batch_size)
        return super().predict(x, batch_size, *args, **kwargs)

    # === Data checks (hooks) ===

    def _check_fit_data(self, x, y, batch_size, kwargs):
        """Checks `fit()`'s data before any step; returns
        `(x, y, batch_size, kwargs)` to train on."""
        self._check_labels(x, y, kwargs.get("validation_data"))
        return x, y, batch_size, kwargs

    def _check_evaluation_data(self, x, y, batch_size, kwargs):
        """Checks `evaluate()`'s data; returns `(x, y)` to evaluate on."""
        self._check_labels(x, y)
        return x, y

    def _labels_num_classes(self, x):
        """The number of classes that labels index, or None if unknown."""
        return getattr(self, "num_classes", None)

    def _check_labels(self, x, y, validation_data=None):
        """Checks the labels given with `x` (and `validation_data`'s) as
        `label_use` says: shape, integer class ids in range, presence."""
        if self.label_use is None:
            return
        _data_checks.check_fit_labels(
            x,
            y,
            validation_data,
            self._labels_num_classes(x),
            type(self).__name__,
            labels_required=self.label_use == "required",
        )

    def _check_image_range(self, x, batch_size, validation_data=None):
        """Checks the first batch of `x` (and of `validation_data`) against
        the range the task reads images in outside training."""
        value_range, owner = data_layer.inference_value_range(
            self, f"the {self.noun}"
        )
        data_layer.check_input_range(x, value_range, "x", owner, batch_size)
        if validation_data is None:
            return
        if isinstance(validation_data, (tuple, list)) and validation_data:
            validation_data = validation_data[0]
            name = "validation_data[0]"
        else:
            name = "validation_data"
        data_layer.check_input_range(
            validation_data, value_range, name, owner, batch_size
        )

    def _training_context(self):
        """The context `fit()` runs Keras's loop in."""
        return contextlib.nullcontext()

    def _per_process_data(self, x, y, batch_size, kwargs):
        """This process's share of `fit()`'s data when several train."""
        if not self.built:
            raise ValueError(
                f"With several processes the {self.noun} must be built before "
                "fit(), so that every process starts from the same weights: "
                f"call {self.noun}.build(input_shape) first, or give data "
                f"whose shape is known. Received: x of type {type(x).__name__}"
            )
        distribute.broadcast_weights(self)
        kwargs = dict(kwargs)
        x, y, batch_size = distribute.per_process_data(
            x, y, batch_size, kwargs.pop("shuffle", True)
        )
        # The arrays' shuffling, if asked for, is now in the pipeline.
        kwargs["shuffle"] = False
        validation_data = kwargs.get("validation_data")
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)):
                vx = validation_data[0]
                vy = validation_data[1] if len(validation_data) > 1 else None
            else:
                vx, vy = validation_data, None
            vx, vy, _ = distribute.per_process_data(
                vx,
                vy,
                kwargs.pop("validation_batch_size", None) or batch_size,
                shuffle=False,
                evaluation=True,
            )
            kwargs["validation_data"] = vx if vy is None else (vx, vy)
        return x, y, batch_size, kwargs

    # === Config ===

    def get_config(self):
        config = super().get_config()
        for key, attribute in self.config_layers.items():
            layer = getattr(self, attribute)
            config[key] = (
                None if layer is None else keras.saving.serialize_keras_object(layer)
            )
        return config

    @classmethod
    def from_config(cls, config):
        # Deserialising a functional model consumes parts of its config.
        config = cls._upgrade_config(copy.deepcopy(config))
        for key in cls.config_layers:
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    @classmethod
    def _upgrade_config(cls, config):
        """A config written by an earlier release, in today's terms."""
        return config
