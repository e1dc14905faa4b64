"""SimCLR pretraining as a `keras.Model` that `fit()` trains on any backend."""

import keras
from keras import ops

from keras_simclr import _evaluation_transform
from keras_simclr import _data_checks
from keras_simclr import _validation
from keras_simclr import cpu_defaults
from keras_simclr import distribute
from keras_simclr.objectives import _arguments as objective_arguments
from keras_simclr.layers import data_layer
from keras_simclr.layers.projection_head import ProjectionHead
from keras_simclr.layers.augmentation_pair import AugmentationPair
from keras_simclr.models import _batch_checks
from keras_simclr.models import _gradient_cache
from keras_simclr.models import _in_step_augmentation
from keras_simclr.models import _legacy_layout
from keras_simclr.models._pretrainer_inputs import PretrainerInputChecks
from keras_simclr.models._pretrainer_inputs import augmentation_layer
from keras_simclr.models._pretrainer_inputs import check_view_keys
from keras_simclr.models._pretrainer_inputs import input_shape_of
from keras_simclr.models.task import Task
from keras_simclr.optimizers.lars import LARS


@keras.saving.register_keras_serializable(package="keras_simclr")
class SimCLRPretrainer(PretrainerInputChecks, Task):
    """SimCLR pretraining: two views per image, encoder, head and objective.

    Each training step makes two augmented views of every image of the batch,
    sends all `2N` views through the encoder and the projection head as one
    batch (as the official implementation does, so batch-norm statistics cover
    both views), and minimises its objective on their outputs: NT-Xent of the
    two projections by default, or any `keras_simclr.objectives.Objective`.
    The objective is computed in `compute_loss`, inside the
    training step that `fit()` compiles, on the TensorFlow, JAX and PyTorch
    backends.

    With labels, `fit()` also trains an online linear probe: a Dense layer on
    the encoder features with the gradient stopped, so it measures the
    representation without changing it (the official
    `lineareval_while_pretraining`). Its cross-entropy is added to the loss
    and its accuracy is reported as `probe_accuracy`.

    Accepted inputs (`x` of `fit`, `evaluate`, `predict`):
    - a batch of images `(N, H, W, C)` (a NumPy array, a tensor, or a
      `tf.data.Dataset` of them), optionally with integer labels `(N,)`: the
      views are made by `augmentation`. Without an augmentation
      (`augmentation=None`, the default) `fit()` refuses raw images: each
      image would be both of its views, identical, and the contrastive
      task would be solved without learning anything;
    - a dict `{"view_a": (N, H, W, C), "view_b": (N, H, W, C)}` of views made
      elsewhere (pipelines that augment in `tf.data`); they are used as
      given. A tuple `(view_a, view_b)` would be read by Keras as `(x, y)`,
      so it is rejected.

    Value ranges: the library's augmentation layers return views in their
    `value_range`, and the library's ResNet reads images in its own
    `value_range`; when both declare one they must be the same (checked
    when the pretrainer is made). `fit`, `evaluate` and `predict` check the
    first batch of their data against that range.

    Outputs of `call` (a dict): `features` (encoder output), `projection`
    (head output) and, with a probe, `probe_logits`. In training, and for
    dict inputs, they cover the `2N` views (first all `view_a`, then all
    `view_b`); `predict(images)` gives them for the images after the
    evaluation transform (`evaluation_views`: images at the view size pass
    unchanged, others get the augmentation's `training=False` transform,
    for the `"imagenet"` preset a centre crop of 87.5% resized bicubically).

    `evaluate()` reports the same metrics as `fit()`, on two augmented views
    of each image with batch norm in inference mode; the probe is evaluated on
    the images after the evaluation transform.

    Args:
        encoder: a Keras model or layer that maps images to a feature vector
            `(N, F)`: a `keras_simclr.models.ResNet`, or any other, e.g. from
            `keras.applications` with `include_top=False, pooling="avg"`.
        augmentation: a layer that maps images to one random view (a
            `keras_simclr.layers.SimCLRAugmentation`), called twice per step;
            an augmentation pair, one layer per view (a
            `keras_simclr.layers.AugmentationPair`, such as
            `SimCLRAugmentation.pair(224, preset="byol")` for BYOL's two
            different views, or a tuple `(view_a, view_b)` of two layers,
            which becomes one): its `view_a` makes the first view and its
            `view_b` the second; or `None` (default) when the views are made
            elsewhere and given as a dict (see above).
            `keras.layers.Identity()` uses each image itself as both views,
            for tests that need exact values; it is never right for
            pretraining.
        projection_head: a layer from features to projections; default
            `ProjectionHead(hidden_dim=None, output_dim=128, num_layers=2)`
            (SimCLR v1).
        objective: what to minimise on the two views' outputs, and the
            one place its method is configured: a
            `keras_simclr.objectives.Objective` (the library's, one class
            per method, such as `SimCLR(temperature=0.5)` or
            `MoCo(queue_size=4096)`, or one of your own), or the key of one
            of the library's at its defaults
            (`keras_simclr.objectives.OBJECTIVES`; default `"simclr"`,
            NT-Xent). Each objective's class documents its arguments, its
            loss, its networks and its state.
        num_classes: number of classes of the online linear probe; `None`
            for no probe.
        global_bn: whether batch norm in the encoder and the head uses the
            statistics of the global batch when training on several
            replicas (the official `global_bn`; SimCLR's Section 3 explains
            why: per-device statistics let the model find its positives by
            their batch statistics). On TensorFlow strategies it is switched
            on for the duration of `fit()` only, never saved with the model;
            under the JAX distribution API the statistics are always global.
            It changes nothing on one device.
        gradient_chunk_size: `None` (default), or the number of images
            whose views each device encodes at a time in a training step
            (each `tf.distribute` replica, `torch.distributed` process or
            device of the JAX distribution API): the step
            then minimises the objective of the whole batch with its exact
            gradient while holding the activations of one chunk (gradient
            caching, Gao et al., 2021): it encodes the batch chunk by chunk
            without keeping activations, computes the loss and its gradient
            with respect to the outputs once for the whole batch, then
            encodes each chunk again and back-propagates its part, for about
            one more forward pass of compute. Batch norm normalises each
            chunk with its own statistics, and the two views of an image are
            never in the same chunk (docs/design.md, decision 25). Use it
            for a batch whose activations do not fit in memory; unlike
            gradient accumulation, every view's negatives are the whole
            batch. On several devices the cached gradient reaches every
            replica as the loss's gathered negatives do, and with
            `global_bn` a chunk's statistics are those of that chunk on
            every device together.
        **kwargs: passed to `keras.Model` (name, dtype, ...). Deprecated,
            and kept for one release with a `DeprecationWarning`: the
            objective's arguments given to the pretrainer, `temperature`,
            `prediction_head`, `momentum`, `momentum_schedule_steps`,
            `queue_size` and `memory_queue` with an objective key, or as a
            dict `objective_config`; they build the objective of that key
            (`objective="moco", temperature=0.2` is
            `objective=MoCo(temperature=0.2)`). Arguments after
            `projection_head` given by position are read in the order of
            earlier releases (`temperature`, `num_classes`, `objective`,
            ...).

    Several devices: build and compile the model under a
    `tf.distribute` strategy's `scope()` (TensorFlow backend) or after
    `keras.distribution.set_distribution(keras.distribution.DataParallel())`
    (JAX). Each view's negatives are then all the other views of the global
    batch, as in the paper, and the step equals the one-device step on the
    same global batch.

    Raises:
        ValueError: when made, for an invalid argument, or an
            `augmentation` whose `value_range` differs from the encoder's;
            in `fit()`, for raw images without an augmentation, and, in
            `fit`, `evaluate` and `predict`, for data the model cannot take
            (shapes, labels, images outside the range it reads them in),
            naming the argument, before any step.

    Example:

    ```python
    encoder = keras_simclr.models.ResNet(18, cifar_stem=True,
                                         input_shape=(32, 32, 3))
    pretrainer = keras_simclr.models.SimCLRPretrainer(
        encoder=encoder,
        augmentation=keras_simclr.layers.SimCLRAugmentation(32, preset="cifar"),
        objective=keras_simclr.objectives.SimCLR(temperature=0.5),
        num_classes=10,
    )
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.06, momentum=0.9))
    pretrainer.fit(images, labels, batch_size=256, epochs=100)
    features = pretrainer.encoder.predict(images)
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR.
    """

    config_layers = {
        "encoder": "encoder",
        "augmentation": "augmentation",
        "projection_head": "projection_head",
        "objective": "objective",
    }
    builtin_loss = "objective (NT-Xent, plus the probe's cross-entropy)"
    label_use = "probe"
    trains_across_processes = True
    noun = "pretrainer"
    unweighted_reason = (
        "each image's loss depends on the whole batch, and the labels only "
        "train the linear probe"
    )

    def __init__(
        self,
        encoder,
        augmentation=None,
        projection_head=None,
        *args,
        objective="simclr",
        num_classes=None,
        global_bn=True,
        gradient_chunk_size=None,
        **kwargs,
    ):
        if args:
            # The order of earlier releases, where the objective's arguments
            # were the pretrainer's.
            given = _positional_arguments(
                args,
                {"objective": objective, "num_classes": num_classes,
                 "global_bn": global_bn},
                kwargs,
            )
            objective = given.pop("objective", objective)
            num_classes = given.pop("num_classes", num_classes)
            global_bn = given.pop("global_bn", global_bn)
            kwargs.update(given)
        objective = objective_arguments.objective_from_pretrainer_arguments(
            objective,
            kwargs.pop("objective_config", None),
            {
                name: kwargs.pop(name, None)
                for name in objective_arguments.DEPRECATED_ARGUMENTS
            },
        )
        super().__init__(**kwargs)
        _validation.check_layer(
            encoder, "encoder",
            description="a Keras model or layer that maps images to feature vectors",
        )
        augmentation = augmentation_layer(augmentation)
        data_layer.check_views_match(
            augmentation,
            {"encoder": (data_layer.declared_value_range(encoder), "the encoder")},
        )
        if projection_head is None:
            projection_head = ProjectionHead(name="projection_head")
        _validation.check_layer(projection_head, "projection_head")
        self.num_classes = _validation.check_num_classes(
            num_classes, "num_classes", allow_none=True
        )
        self.global_bn = _validation.check_bool(global_bn, "global_bn")
        self.gradient_chunk_size = _validation.check_int(
            gradient_chunk_size, "gradient_chunk_size", minimum=1, allow_none=True
        )
        # The chunks of a step whose batch is not known when it is traced
        # (TensorFlow's relaxed traces): set by fit() from its batch.
        self._fit_chunk_count = None
        # Attribute order sets the order of the trainable variables (and so
        # of the optimizer's): encoder, head, the objective's, probe.
        self.encoder = encoder
        self.augmentation = augmentation
        self.projection_head = projection_head
        objective.attach(encoder, projection_head)
        self.objective = objective
        self.probe = None
        if num_classes is not None:
            self.probe = keras.layers.Dense(
                num_classes, dtype=self.dtype_policy, name="linear_probe"
            )
            self.probe_loss_tracker = keras.metrics.Mean(name="probe_loss")
            self.probe_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
                name="probe_accuracy"
            )

    # === Building ===

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            check_view_keys(input_shape)
            view_shape = tuple(input_shape["view_a"])
            self._check_image_shape(view_shape, "x['view_a']")
        else:
            self._check_image_shape(input_shape, "x")
            view_shape = tuple(input_shape)
            if self.augmentation is not None:
                view_shape = self._augmented_view_shape(view_shape)
        self._check_view_size(view_shape, isinstance(input_shape, dict))
        if not self.encoder.built:
            self.encoder.build(view_shape)
        feature_shape = tuple(self.encoder.compute_output_shape(view_shape))
        if len(feature_shape) != 2:
            raise ValueError(
                "`encoder` must map images to feature vectors (batch, "
                f"features); for input {view_shape} it gives {feature_shape}. "
                "For a keras.applications model, use include_top=False and "
                "pooling='avg'."
            )
        if not self.projection_head.built:
            self.projection_head.build(feature_shape)
        if self.probe is not None:
            self.probe.build(feature_shape)
        projection_shape = tuple(
            self.projection_head.compute_output_shape(feature_shape)
        )
        if not self.objective.built:
            self.objective.build(view_shape, feature_shape, projection_shape)

    # === Forward pass ===

    def _encode(self, images, training):
        features = self.encoder(images, training=training)
        projection = self.projection_head(features, training=training)
        outputs = {"features": features, "projection": projection}
        if self.probe is not None:
            outputs["probe_logits"] = self.probe(ops.stop_gradient(features))
        return self.objective.add_outputs(images, outputs, training)

    def _encode_pair(self, view_a, view_b, training):
        # Both views in one batch, so batch norm sees all 2N of them.
        return self._encode(ops.concatenate([view_a, view_b], axis=0), training)

    def _require_probe(self, received):
        if self.probe is None and not self.objective.needs_labels:
            raise ValueError(
                "Labels were given but the pretrainer has no linear probe "
                "to use them. Fit on images alone (for the library's "
                "pipelines, `with_labels=False`, e.g. "
                "`pretraining_dataset(..., with_labels=False)`), or pass "
                "`num_classes` to SimCLRPretrainer to train an online probe. "
                f"Received: {received}"
            )

    def make_views(self, images):
        """Returns two random views `(view_a, view_b)` of a batch of images.

        On TensorFlow, in a step that is not compiled with XLA as a whole
        (Keras's default on a CPU), the library's augmentation layers run
        as one XLA cluster inside the step, which fuses their elementwise
        operations (docs/design.md, decision 17; docs/speed.md gives the
        gain on a CPU).
        """
        if self.augmentation is None:
            return images, images
        return _in_step_augmentation.run(
            self, self.augmentation, self._augment, images
        )

    def _augment(self, images):
        if isinstance(self.augmentation, AugmentationPair):
            return self.augmentation(images, training=True)
        return (
            self.augmentation(images, training=True),
            self.augmentation(images, training=True),
        )

    @property
    def evaluation_transform(self):
        """The layer whose inference call is the evaluation transform: the
        augmentation (the first view's of an augmentation pair), or None
        without an augmentation.

        `evaluation_views(images)` passes images whose height and width
        already equal the augmentation's view size unchanged (they are
        taken as already transformed: arrays stored at the view size, or a
        pipeline that applied the transform per image) and sends images of
        another size through `augmentation(images, training=False)`: for
        `SimCLRAugmentation`'s `"imagenet"` preset, a centre crop of 87.5%
        of the image resized bicubically to the view size, as the official
        SimCLR evaluation; for `"cifar"`, the whole image resized
        bilinearly. `call(images, training=False)`, hence `predict` and the
        probe of `evaluate`, and the library's kNN and linear evaluation,
        export and the classifiers built from this pretrainer, all go
        through it.
        """
        return _evaluation_transform.transform_layer(self.augmentation)

    def export_outputs(self, images):
        """Inference outputs for export, as a dict, on
        `evaluation_views(images)`: `"features"` (encoder output),
        `"projection"` (projection head output) and, with a linear probe,
        `"logits"` (the probe's)."""
        features = self.encoder(self.evaluation_views(images), training=False)
        outputs = {
            "features": features,
            "projection": self.projection_head(features, training=False),
        }
        if self.probe is not None:
            outputs["logits"] = self.probe(features)
        return outputs

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            check_view_keys(inputs)
            view_a, view_b = inputs["view_a"], inputs["view_b"]
            self._check_image_shape(view_a.shape, "x['view_a']")
            self._check_image_shape(view_b.shape, "x['view_b']")
        else:
            self._check_image_shape(inputs.shape, "x")
            if not training:
                return self._encode(self.evaluation_views(inputs), training=False)
            view_a, view_b = self.make_views(inputs)
        if training:
            self.objective.before_step()
            if self.gradient_chunk_size is not None:
                return self._encode_pair_in_chunks(view_a, view_b)
        return self._encode_pair(view_a, view_b, training)

    def _encode_pair_in_chunks(self, view_a, view_b):
        """The training outputs of `_encode_pair`, encoded chunk by chunk,
        with the gradient cached (models/_gradient_cache.py)."""
        num_images = view_a.shape[0]
        if num_images is None:
            num_images = ops.shape(view_a)[0]
            count = self._fit_chunk_count
            if count is None:
                raise ValueError(
                    "gradient_chunk_size needs the batch size when the step "
                    "is traced without one: train with fit(), which reads "
                    f"it. Received: gradient_chunk_size={self.gradient_chunk_size}, "
                    "a batch of unknown size"
                )
            num_images = _gradient_cache.check_enough_images(num_images, count)
        else:
            # A chunk holds gradient_chunk_size images on each device.
            count = _gradient_cache.num_chunks(
                num_images,
                self.gradient_chunk_size * _gradient_cache.devices_in_one_call(self),
            )
        if count == 1:
            return self._encode_pair(view_a, view_b, training=True)
        views = ops.concatenate([view_a, view_b], axis=0)
        rows = _gradient_cache.chunk_rows(num_images, count)
        chunk_views = [
            _gradient_cache.shard_like_the_batch(ops.take(views, chunk, axis=0))
            for chunk in rows
        ]
        stateful = self._cache_state_variables()
        snapshots, chunk_outputs = [], []
        for chunk in chunk_views:
            previous = list(chunk_outputs[-1].values()) if chunk_outputs else []
            chunk = _gradient_cache.after(chunk, previous)
            snapshots.append(_gradient_cache.snapshot(stateful))
            with _gradient_cache.no_gradient():
                outputs = self._encode(chunk, training=True)
            chunk_outputs.append(_gradient_cache.stop(outputs))
        outputs = _gradient_cache.assemble(chunk_outputs, rows)
        keys = list(outputs)

        def encode(chunk):
            encoded = self._encode(chunk, training=True)
            return [encoded[key] for key in keys]

        trainable = list(self.trainable_variables)
        cached = _gradient_cache.cached(
            [outputs[key] for key in keys],
            encode,
            chunk_views,
            rows,
            trainable,
            _gradient_cache.values(trainable),
            stateful,
            snapshots,
        )
        return dict(zip(keys, cached))

    def _cache_state_variables(self):
        """The non-trainable variables that encoding a chunk reads (batch
        norm's moving statistics, random states): those of the encoder,
        the head, the probe and the objective's networks."""
        layers = [self.encoder, self.projection_head, *self.objective.networks()]
        if self.probe is not None:
            layers.append(self.probe)
        seen, state = set(), []
        for layer in layers:
            for variable in layer.non_trainable_variables:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    state.append(variable)
        return state

    # === Loss ===

    def compute_task_loss(self, x, y, y_pred, training):
        if isinstance(x, dict) or training:
            pair_outputs = y_pred
        else:
            # evaluate() on raw images: the objective needs two views.
            view_a, view_b = self.make_views(x)
            pair_outputs = self._encode_pair(view_a, view_b, training=False)
        labels = None
        if y is not None:
            labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        # Under a `tf.distribute` strategy every objective sees the global
        # batch: contrastive ones score local anchors against gathered keys,
        # batch-statistics ones compute their statistics on gathered
        # projections.
        total = ops.cast(
            self.objective.compute_loss(pair_outputs, labels, training), "float32"
        )
        if y is not None and (self.probe is not None or not self.objective.needs_labels):
            self._require_probe(f"y of shape {tuple(y.shape)}")
            weight = ops.cast(ops.shape(labels)[0], "float32")
            logits = ops.cast(y_pred["probe_logits"], "float32")
            if isinstance(x, dict) or training:
                # The probe saw both views.
                labels = ops.concatenate([labels, labels], axis=0)
            probe_loss = ops.mean(
                keras.losses.sparse_categorical_crossentropy(
                    labels, logits, from_logits=True
                )
            )
            self.probe_loss_tracker.update_state(probe_loss, sample_weight=weight)
            self.probe_accuracy_tracker.update_state(labels, logits)
            total = total + probe_loss
        return total

    # === Training entry points ===

    def default_optimizer(self):
        """SimCLR's optimizer (its Section B.1), for `compile("auto")`:
        `keras_simclr.optimizers.LARS` with momentum 0.9, weight decay 1e-6
        (batch-norm parameters and biases excluded) and learning rate 0.3,
        the paper's rate per 256 images; scale it to your batch with
        `keras_simclr.optimizers.scale_learning_rate` and add a warm-up and
        cosine decay (`WarmupCosineDecay`) for long runs."""
        return LARS(0.3, momentum=0.9, weight_decay=1e-6)

    def _check_fit_data(self, x, y, batch_size, kwargs):
        if keras.backend.backend() == "tensorflow":
            cpu_defaults.check_onednn()
        self._validate_data(x, y, batch_size)
        _gradient_cache.warn_about_accumulation(self)
        _batch_checks.check_fit_batches(self, x, batch_size, kwargs)
        x = self._check_views_are_made(x)
        if not self.built:
            # Callbacks such as BackupAndRestore need the variables at once.
            input_shape = input_shape_of(x)
            if input_shape is not None:
                with distribute.model_scope(self):
                    self.build(input_shape)
        validation_data = kwargs.get("validation_data")
        if isinstance(validation_data, (tuple, list)):
            self._validate_data(
                validation_data[0],
                validation_data[1] if len(validation_data) > 1 else None,
                kwargs.get("validation_batch_size") or batch_size,
                prefix="validation_data",
            )
        elif _data_checks.is_tf_dataset(validation_data):
            self._validate_dataset(validation_data, "validation_data")
            kwargs["validation_data"] = _data_checks.check_batches_hold_two_images(
                validation_data, "validation_data"
            )
        if _data_checks.is_tf_dataset(x):
            x = _data_checks.check_batches_hold_two_images(x, "x")
        return x, y, batch_size, kwargs

    def _check_evaluation_data(self, x, y, batch_size, kwargs):
        self._validate_data(x, y, batch_size)
        if _data_checks.is_tf_dataset(x):
            # On the global batches: with several processes, some may
            # hold no image of the last one.
            x = _data_checks.check_batches_hold_two_images(x, "x")
        return x, y

    def _training_context(self):
        return distribute.global_batch_norm(
            self,
            [self.encoder, self.projection_head, *self.objective.networks()],
            enabled=self.global_bn,
        )

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "global_bn": self.global_bn})
        if self.gradient_chunk_size is not None:
            config["gradient_chunk_size"] = self.gradient_chunk_size
        return config

    @classmethod
    def from_config(cls, config):
        legacy = isinstance(config.get("objective", "simclr"), str)
        model = super().from_config(config)
        model._legacy_layout = legacy
        return model

    @classmethod
    def _upgrade_config(cls, config):
        if isinstance(config.get("objective", "simclr"), str):
            # Written before objectives were classes: the objective's
            # arguments are the pretrainer's, at their defaults where unused.
            _legacy_layout.objective_arguments_from_config(config)
        return config

    def load_own_variables(self, store):
        if getattr(self, "_legacy_layout", False):
            _legacy_layout.load(self, store)
            return
        super().load_own_variables(store)


# The positional order of earlier releases, after `projection_head`.
_POSITIONAL_ARGUMENTS = (
    "temperature",
    "num_classes",
    "objective",
    "objective_config",
    "prediction_head",
    "momentum",
    "momentum_schedule_steps",
    "queue_size",
    "memory_queue",
    "global_bn",
)
_DEFAULTS = {"objective": "simclr", "num_classes": None, "global_bn": True}


def _positional_arguments(args, keyword_only, kwargs):
    """The arguments after `projection_head` given by position, by name."""
    if len(args) > len(_POSITIONAL_ARGUMENTS):
        raise TypeError(
            "SimCLRPretrainer takes at most "
            f"{3 + len(_POSITIONAL_ARGUMENTS)} positional arguments; pass "
            "them by keyword. Received: "
            f"{3 + len(args)} positional arguments"
        )
    named = dict(zip(_POSITIONAL_ARGUMENTS, args))
    for name in named:
        if name in kwargs or (
            name in keyword_only and keyword_only[name] is not _DEFAULTS[name]
        ):
            raise TypeError(
                f"SimCLRPretrainer got `{name}` both by position and by keyword."
            )
    return named
