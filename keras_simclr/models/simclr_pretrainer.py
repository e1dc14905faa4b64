"""SimCLR pretraining as a `keras.Model` that `fit()` trains on any backend."""

import contextlib
import copy

import keras
import numpy as np
from keras import ops

from keras_simclr import _validation
from keras_simclr import cpu_defaults
from keras_simclr import distribute
from keras_simclr.layers.data_layer import check_value_range
from keras_simclr.layers.data_layer import value_range_error_from_graph
from keras_simclr.layers.prediction_head import PredictionHead
from keras_simclr.layers.projection_head import ProjectionHead
from keras_simclr.losses.byol import cosine_momentum
from keras_simclr.losses.moco import update_queue
from keras_simclr.losses.nt_xent import _validate_temperature
from keras_simclr.losses.nt_xent import contrastive_metrics
from keras_simclr.losses.unigrad import unigrad_correlation
from keras_simclr.losses.unigrad import update_correlation
from keras_simclr.models import objectives
from keras_simclr.models._compile import restore_compiled_state
from keras_simclr.optimizers.lars import LARS

VIEW_KEYS = ("view_a", "view_b")


@keras.saving.register_keras_serializable(package="keras_simclr")
class SimCLRPretrainer(keras.Model):
    """SimCLR pretraining: two views per image, encoder, head and NT-Xent.

    Each training step makes two augmented views of every image of the batch,
    sends all `2N` views through the encoder and the projection head as one
    batch (as the official implementation does, so batch-norm statistics cover
    both views), and minimises `keras_simclr.losses.nt_xent` of the two
    projections. The objective is computed in `compute_loss`, inside the
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
      views are made by `augmentation`; with `augmentation=None` the images
      themselves are both views (for exact tests, and for pipelines that
      augment in `tf.data` and give pairs as below);
    - a dict `{"view_a": (N, H, W, C), "view_b": (N, H, W, C)}` of views made
      elsewhere; they are used as given. A tuple `(view_a, view_b)` would be
      read by Keras as `(x, y)`, so it is rejected.

    Outputs of `call` (a dict): `features` (encoder output), `projection`
    (head output) and, with a probe, `probe_logits`. In training, and for
    dict inputs, they cover the `2N` views (first all `view_a`, then all
    `view_b`); `predict(images)` gives them for the un-augmented images.

    `evaluate()` reports the same metrics as `fit()`, on two augmented views
    of each image with batch norm in inference mode; the probe is evaluated on
    the un-augmented images.

    Args:
        encoder: a Keras model or layer that maps images to a feature vector
            `(N, F)`: a `keras_simclr.models.ResNet`, or any other, e.g. from
            `keras.applications` with `include_top=False, pooling="avg"`.
        augmentation: a layer that maps images to one random view (a
            `keras_simclr.layers.SimCLRAugmentation`), called twice per step;
            or `None` (see above).
        projection_head: a layer from features to projections; default
            `ProjectionHead(hidden_dim=None, output_dim=128, num_layers=2)`
            (SimCLR v1).
        temperature: positive float, the temperature of simclr, supcon and
            moco; `None` (default) for 0.1 (the paper's value for large
            batches; its CIFAR-10 experiments use 0.5).

        An argument that the chosen objective does not use (`temperature`,
        `prediction_head`, `momentum`, `momentum_schedule_steps`,
        `queue_size`) must be left unset: given, it is refused with a
        `ValueError` that names the objectives using it.
        num_classes: number of classes of the online linear probe; `None`
            for no probe.
        objective: what to minimise, on the same views, encoder and head:
            `"simclr"` (NT-Xent, default), `"supcon"` (supervised
            contrastive; `fit` needs labels), `"moco"` (InfoNCE against a
            queue of momentum-encoder keys), `"byol"` (prediction head and
            momentum target), `"simsiam"` (prediction head, stop-gradient),
            `"barlow_twins"`, `"vicreg"` or `"unigrad"` (momentum target and
            a running target correlation). `temperature` applies to simclr,
            supcon and moco; the other settings of each objective (the
            arguments of its function in `keras_simclr.losses`) go in
            `objective_config`.
        objective_config: dict of keyword arguments of the objective, e.g.
            `{"lambda_offdiag": 5e-3}` for barlow_twins, the three weights
            of vicreg, `{"lambda_": 100.0, "rho": 0.99}` for unigrad.
        prediction_head: the prediction head of byol and simsiam; default
            `PredictionHead(hidden_dim=4096)` for byol and `hidden_dim=512`
            for simsiam (their papers' widths).
        momentum: the momentum `m` of the target network of moco, byol,
            unigrad and the simclr memory queue, updated as
            `target = m * target + (1 - m) * online` before the target's
            forward pass of each step (as MoCo does). `None` (default) for
            0.996, as BYOL; MoCo uses 0.999.
        momentum_schedule_steps: if set, the momentum rises from `momentum`
            to 1 along BYOL's cosine schedule over this many steps (usually
            the total number of training steps); if `None` it stays
            constant.
        queue_size: number of keys in the queue of negatives of moco, and of
            simclr with `memory_queue=True`; `None` (default) for 65536,
            as MoCo. Each step
            enqueues the keys of both views of the global batch, so it must
            be at least twice the global batch.
        memory_queue: SimCLR v2's memory (its Section 2, after MoCo): with
            `objective="simclr"`, a momentum copy of encoder and head (moved
            by `momentum` as above) projects both views of every step into a
            queue of `queue_size` keys, and those keys are extra negatives of
            NT-Xent (`keras_simclr.losses.nt_xent(..., negatives=)`). The
            queue and the momentum weights are non-trainable variables of the
            model: they update inside the compiled step and are saved with
            it. The paper reports a modest gain from it, about 1% in linear
            evaluation at batch size 4096.
        global_bn: whether batch norm in the encoder and the head uses the
            statistics of the global batch when training on several
            replicas (the official `global_bn`; SimCLR's Section 3 explains
            why: per-device statistics let the model find its positives by
            their batch statistics). On TensorFlow strategies it is switched
            on for the duration of `fit()` only, never saved with the model;
            under the JAX distribution API the statistics are always global.
            It changes nothing on one device.
        **kwargs: passed to `keras.Model` (name, dtype, ...).

    Several devices: build and compile the model under a
    `tf.distribute` strategy's `scope()` (TensorFlow backend) or after
    `keras.distribution.set_distribution(keras.distribution.DataParallel())`
    (JAX). Each view's negatives are then all the other views of the global
    batch, as in the paper, and the step equals the one-device step on the
    same global batch.

    Example:

    ```python
    encoder = keras_simclr.models.ResNet(18, cifar_stem=True,
                                         input_shape=(32, 32, 3))
    pretrainer = keras_simclr.models.SimCLRPretrainer(
        encoder=encoder,
        augmentation=keras_simclr.layers.SimCLRAugmentation(32, preset="cifar"),
        temperature=0.5,
        num_classes=10,
    )
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.06, momentum=0.9))
    pretrainer.fit(images, labels, batch_size=256, epochs=100)
    features = pretrainer.encoder.predict(images)
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR.
    """

    def __init__(
        self,
        encoder,
        augmentation=None,
        projection_head=None,
        temperature=None,
        num_classes=None,
        objective="simclr",
        objective_config=None,
        prediction_head=None,
        momentum=None,
        momentum_schedule_steps=None,
        queue_size=None,
        memory_queue=False,
        global_bn=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(encoder, keras.layers.Layer):
            raise ValueError(
                "`encoder` must be a Keras model or layer that maps images to "
                f"feature vectors. Received: encoder={encoder!r}"
            )
        if augmentation is not None and not isinstance(
            augmentation, keras.layers.Layer
        ):
            raise ValueError(
                "`augmentation` must be a Keras layer or None. "
                f"Received: augmentation={augmentation!r}"
            )
        if projection_head is None:
            projection_head = ProjectionHead(name="projection_head")
        elif not isinstance(projection_head, keras.layers.Layer):
            raise ValueError(
                "`projection_head` must be a Keras layer or None. "
                f"Received: projection_head={projection_head!r}"
            )
        if num_classes is not None and (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, int)
            or num_classes < 2
        ):
            raise ValueError(
                "`num_classes` must be an integer >= 2, or None for no probe. "
                f"Received: num_classes={num_classes!r}"
            )
        if not isinstance(global_bn, bool):
            raise ValueError(
                "`global_bn` must be True or False. "
                f"Received: global_bn={global_bn!r}"
            )
        self.global_bn = global_bn
        self.objective = objective
        self._objective = objectives.get_objective(objective)
        self.objective_config = objectives.validate_objective_config(
            self._objective, objective_config
        )
        if not isinstance(memory_queue, bool):
            raise ValueError(
                "`memory_queue` must be True or False. "
                f"Received: memory_queue={memory_queue!r}"
            )
        if memory_queue and objective != "simclr":
            raise ValueError(
                "`memory_queue` adds a queue of negatives to objective="
                "'simclr' (SimCLR v2); objective='moco' always has one, the "
                f"others none. Received: memory_queue=True, objective={objective!r}"
            )
        # An argument the objective would ignore is refused, not dropped.
        objectives.check_unused_arguments(
            self._objective,
            memory_queue,
            {
                "temperature": temperature,
                "prediction_head": prediction_head,
                "momentum": momentum,
                "momentum_schedule_steps": momentum_schedule_steps,
                "queue_size": queue_size,
            },
        )
        if temperature is None and self._objective.uses("temperature"):
            temperature = objectives.OBJECTIVE_ARGUMENTS["temperature"][0]
        uses_momentum = self._objective.uses("momentum", memory_queue)
        if momentum is None and uses_momentum:
            momentum = objectives.OBJECTIVE_ARGUMENTS["momentum"][0]
        if queue_size is None and self._objective.uses("queue_size", memory_queue):
            queue_size = objectives.OBJECTIVE_ARGUMENTS["queue_size"][0]
        if prediction_head is None and self._objective.predictor_hidden_dim:
            prediction_head = PredictionHead(
                hidden_dim=self._objective.predictor_hidden_dim,
                name="prediction_head",
            )
        if prediction_head is not None and not isinstance(
            prediction_head, keras.layers.Layer
        ):
            raise ValueError(
                "`prediction_head` must be a Keras layer or None. "
                f"Received: prediction_head={prediction_head!r}"
            )
        if momentum is not None and (
            isinstance(momentum, bool)
            or not isinstance(momentum, (int, float))
            or not 0.0 <= momentum < 1.0
        ):
            raise ValueError(
                "`momentum` must be a number in [0, 1). "
                f"Received: momentum={momentum!r}"
            )
        if momentum_schedule_steps is not None and (
            isinstance(momentum_schedule_steps, bool)
            or not isinstance(momentum_schedule_steps, int)
            or momentum_schedule_steps < 1
        ):
            raise ValueError(
                "`momentum_schedule_steps` must be a positive integer or None. "
                f"Received: momentum_schedule_steps={momentum_schedule_steps!r}"
            )
        if queue_size is not None and (
            isinstance(queue_size, bool)
            or not isinstance(queue_size, int)
            or queue_size < 1
        ):
            raise ValueError(
                "`queue_size` must be a positive integer. "
                f"Received: queue_size={queue_size!r}"
            )
        self.memory_queue = memory_queue
        self.prediction_head = prediction_head
        self.momentum = None if momentum is None else float(momentum)
        self.momentum_schedule_steps = momentum_schedule_steps
        self.queue_size = queue_size
        self.target_encoder = None
        self.target_projection_head = None
        if self._objective.momentum_target or memory_queue:
            self.target_encoder = _clone(encoder, "target_encoder")
            self.target_projection_head = _clone(
                projection_head, "target_projection_head"
            )
        self.encoder = encoder
        self.augmentation = augmentation
        self.projection_head = projection_head
        self.temperature = (
            None if temperature is None else _validate_temperature(temperature)
        )
        self.num_classes = num_classes
        self.probe = None
        if num_classes is not None:
            self.probe = keras.layers.Dense(
                num_classes, dtype=self.dtype_policy, name="linear_probe"
            )

        if objective == "simclr":
            self.contrastive_loss_tracker = keras.metrics.Mean(
                name="contrastive_loss"
            )
            self.contrastive_accuracy_tracker = keras.metrics.Mean(
                name="contrastive_accuracy"
            )
            self.contrastive_entropy_tracker = keras.metrics.Mean(
                name="contrastive_entropy"
            )
        else:
            self.objective_loss_tracker = keras.metrics.Mean(
                name=f"{objective}_loss"
            )
            # The mean cosine between the projections of an image's two
            # views: what every objective pulls up, and the number to watch
            # for UniGrad, whose surrogate loss is not itself minimised.
            self.positive_similarity_tracker = keras.metrics.Mean(
                name="positive_similarity"
            )
        if self.probe is not None:
            self.probe_loss_tracker = keras.metrics.Mean(name="probe_loss")
            self.probe_accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
                name="probe_accuracy"
            )

    # === Building ===

    def _image_channels(self):
        inputs = getattr(self.encoder, "inputs", None)
        if inputs:
            return inputs[0].shape[-1]
        return None

    def _check_image_shape(self, shape, argument):
        shape = tuple(shape)
        if len(shape) != 4:
            raise ValueError(
                f"`{argument}` must be a batch of images of shape (batch, "
                f"height, width, channels). Received: {argument}.shape={shape}"
            )
        channels = self._image_channels()
        if channels is not None and shape[-1] is not None and shape[-1] != channels:
            raise ValueError(
                f"`{argument}` has {shape[-1]} channels but the encoder expects "
                f"{channels}. Received: {argument}.shape={shape}"
            )

    def _check_view_size(self, view_shape, given_views):
        """Refuses views whose size the encoder's input cannot take."""
        inputs = getattr(self.encoder, "inputs", None)
        if not inputs:
            return
        expected = tuple(inputs[0].shape)
        if len(expected) != 4:
            return
        mismatch = any(
            want is not None and have is not None and want != have
            for want, have in zip(expected[1:3], view_shape[1:3])
        )
        if not mismatch:
            return
        size = f"{view_shape[1]}x{view_shape[2]}"
        wanted = f"{expected[1]}x{expected[2]}"
        if given_views:
            source = f"The views given in `x` are {size} images"
        elif self.augmentation is not None:
            image_size = getattr(self.augmentation, "image_size", None)
            source = (
                f"The augmentation makes {size} views "
                + (f"(`image_size={image_size}`)" if image_size else "")
            )
        else:
            source = f"With augmentation=None the images themselves ({size}) are the views"
        raise ValueError(
            f"{source}, but the encoder takes {wanted} images (its input "
            f"shape is {expected}). Make the two agree: set the "
            "augmentation's `image_size` to the encoder's input size, or "
            "build the encoder for the view size. Received: view shape "
            f"{tuple(view_shape)}, encoder input shape {expected}"
        )

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            _check_view_keys(input_shape)
            view_shape = tuple(input_shape["view_a"])
            self._check_image_shape(view_shape, "x['view_a']")
        else:
            self._check_image_shape(input_shape, "x")
            view_shape = tuple(input_shape)
            if self.augmentation is not None:
                view_shape = tuple(self.augmentation.compute_output_shape(view_shape))
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
        if self.prediction_head is not None and not self.prediction_head.built:
            self.prediction_head.build(projection_shape)
        if self.target_encoder is not None:
            self._build_target(view_shape, feature_shape)
        if self._has_queue:
            queue = keras.random.normal(
                (self.queue_size, projection_shape[-1]), seed=0
            )
            self.queue = self.add_weight(
                shape=queue.shape,
                initializer=keras.initializers.Constant(
                    ops.convert_to_numpy(ops.normalize(queue, axis=-1))
                ),
                trainable=False,
                dtype="float32",
                name="queue",
            )
        if self.objective == "unigrad":
            dim = projection_shape[-1]
            self.correlation = self.add_weight(
                shape=(dim, dim), initializer="zeros", trainable=False,
                dtype="float32", name="correlation",
            )
            self.correlation_initialized = self.add_weight(
                shape=(), initializer="zeros", trainable=False,
                dtype="float32", name="correlation_initialized",
            )

    @property
    def _has_queue(self):
        return self.objective == "moco" or self.memory_queue

    def _build_target(self, view_shape, feature_shape):
        """The momentum target: a copy of encoder and head, moved by EMA."""
        if not self.target_encoder.built:
            self.target_encoder.build(view_shape)
        if not self.target_projection_head.built:
            self.target_projection_head.build(feature_shape)
        self._target_pairs = []
        for online_layer, target_layer in (
            (self.encoder, self.target_encoder),
            (self.projection_head, self.target_projection_head),
        ):
            online_weights, target_weights = online_layer.weights, target_layer.weights
            if [w.shape for w in online_weights] != [w.shape for w in target_weights]:
                raise ValueError(
                    "The momentum target could not be made as a copy of "
                    f"{online_layer.name}: its weights differ. Received: "
                    f"{online_layer.name} of type {type(online_layer).__name__}"
                )
            for online, target in zip(online_weights, target_weights):
                # The target is moved by EMA only, never by the optimizer; its
                # layers stay trainable so that its batch norm uses batch
                # statistics in training, as BYOL's and MoCo's targets do.
                target.trainable = False
                # A copy: on JAX two variables sharing one buffer cannot
                # both be donated to the compiled step.
                target.assign(ops.copy(online))
                if online.trainable:
                    self._target_pairs.append((online, target))
        self.target_updates = self.add_weight(
            shape=(), initializer="zeros", trainable=False, dtype="float32",
            name="target_updates",
        )

    # === Forward pass ===

    def _encode(self, images, training):
        features = self.encoder(images, training=training)
        projection = self.projection_head(features, training=training)
        outputs = {"features": features, "projection": projection}
        if self.probe is not None:
            outputs["probe_logits"] = self.probe(ops.stop_gradient(features))
        if self.prediction_head is not None:
            outputs["prediction"] = self.prediction_head(projection, training=training)
        if self.target_encoder is not None:
            target = self.target_projection_head(
                self.target_encoder(images, training=training), training=training
            )
            outputs["target_projection"] = ops.stop_gradient(target)
        return outputs

    def _target_momentum(self):
        if self.momentum_schedule_steps is None:
            return self.momentum
        return cosine_momentum(
            self.target_updates, self.momentum_schedule_steps, self.momentum
        )

    def _update_target(self):
        """One EMA step of the momentum target towards the online network."""
        momentum = self._target_momentum()
        for online, target in self._target_pairs:
            value = ops.stop_gradient(ops.cast(online, target.dtype))
            target.assign(momentum * target + (1.0 - momentum) * value)
        self.target_updates.assign(self.target_updates + 1.0)

    def _encode_pair(self, view_a, view_b, training):
        # Both views in one batch, so batch norm sees all 2N of them.
        return self._encode(ops.concatenate([view_a, view_b], axis=0), training)

    def _require_probe(self, received):
        if self.probe is None and not self._objective.needs_labels:
            raise ValueError(
                "Labels were given but the pretrainer has no linear probe "
                "to use them. Fit on images alone (for the library's "
                "pipelines, `with_labels=False`, e.g. "
                "`pretraining_dataset(..., with_labels=False)`), or pass "
                "`num_classes` to SimCLRPretrainer to train an online probe. "
                f"Received: {received}"
            )

    def make_views(self, images):
        """Returns two random views `(view_a, view_b)` of a batch of images."""
        if self.augmentation is None:
            return images, images
        return (
            self.augmentation(images, training=True),
            self.augmentation(images, training=True),
        )

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            _check_view_keys(inputs)
            view_a, view_b = inputs["view_a"], inputs["view_b"]
            self._check_image_shape(view_a.shape, "x['view_a']")
            self._check_image_shape(view_b.shape, "x['view_b']")
        else:
            self._check_image_shape(inputs.shape, "x")
            if not training:
                return self._encode(inputs, training=False)
            view_a, view_b = self.make_views(inputs)
        if training and self.target_encoder is not None:
            self._update_target()
        return self._encode_pair(view_a, view_b, training)

    # === Objective ===

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if sample_weight is not None:
            raise ValueError(
                "SimCLRPretrainer does not take sample weights: each image's "
                "loss depends on the whole batch. Received: sample_weight="
                f"{getattr(sample_weight, 'shape', sample_weight)}"
            )
        if isinstance(x, dict) or training:
            pair_outputs = y_pred
        else:
            # evaluate() on raw images: the contrastive metrics need two views.
            view_a, view_b = self.make_views(x)
            pair_outputs = self._encode_pair(view_a, view_b, training=False)
        labels = None
        if y is not None:
            labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        total = self._objective_loss(pair_outputs, labels, training)

        if y is not None and (self.probe is not None or not self._objective.needs_labels):
            self._require_probe(f"y of shape {tuple(y.shape)}")
            labels = ops.reshape(ops.cast(y, "int32"), (-1,))
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
            self.probe_loss_tracker.update_state(
                probe_loss, sample_weight=weight
            )
            self.probe_accuracy_tracker.update_state(labels, logits)
            total = total + probe_loss

        for extra in self.losses:
            total = total + ops.cast(ops.sum(extra), "float32")
        # The replicas' gradients are summed: each contributes 1/R of its loss.
        return distribute.scale_loss(total)

    def _objective_loss(self, outputs, labels, training):
        """The objective on the `2N` views' outputs; updates its trackers.

        Under a `tf.distribute` strategy every objective sees the global
        batch: contrastive ones score local anchors against gathered keys,
        the batch-statistics ones (Barlow Twins, VICReg, UniGrad's
        correlation) compute their statistics on gathered projections.
        """
        name = self.objective
        config = self.objective_config
        z_a, z_b = ops.split(outputs["projection"], 2, axis=0)
        # Weighted by the batch's images, as Keras weights its `loss`: with
        # a smaller last batch the epoch means still agree.
        weight = ops.cast(ops.shape(z_a)[0], "float32")
        if name == "simclr":
            negatives = None
            if self.memory_queue:
                negatives = self._queue_snapshot()
            loss, accuracy, entropy = contrastive_metrics(
                z_a, z_b, self.temperature, cross_replica=True, negatives=negatives
            )
            if self.memory_queue and training:
                self._enqueue(outputs["target_projection"])
            self.contrastive_loss_tracker.update_state(loss, sample_weight=weight)
            self.contrastive_accuracy_tracker.update_state(
                accuracy, sample_weight=weight
            )
            self.contrastive_entropy_tracker.update_state(entropy, sample_weight=weight)
            return loss
        if name == "supcon":
            if labels is None:
                raise ValueError(
                    "objective='supcon' needs labels: fit on (images, labels). "
                    "Received: no labels"
                )
            loss = self._objective.function(
                z_a, z_b, labels, temperature=self.temperature,
                cross_replica=True, **config,
            )
        elif name in ("barlow_twins", "vicreg"):
            loss = self._objective.function(z_a, z_b, cross_replica=True, **config)
        elif name == "simsiam":
            loss = self._objective.function(
                outputs["prediction"], outputs["projection"], **config
            )
        elif name == "byol":
            loss = self._objective.function(
                outputs["prediction"], outputs["target_projection"], **config
            )
        elif name == "moco":
            keys = outputs["target_projection"]
            k_a, k_b = ops.split(keys, 2, axis=0)
            queue = self._queue_snapshot()
            function = self._objective.function
            loss = 0.5 * (
                function(z_a, k_b, queue, temperature=self.temperature, **config)
                + function(z_b, k_a, queue, temperature=self.temperature, **config)
            )
            if training:
                self._enqueue(keys)
        else:  # unigrad
            config = dict(config)
            rho = config.pop("rho", 0.99)
            t_a, t_b = ops.split(outputs["target_projection"], 2, axis=0)
            batch_correlation = unigrad_correlation(t_a, t_b, cross_replica=True)
            current = ops.convert_to_tensor(self.correlation)
            initialized = ops.convert_to_tensor(self.correlation_initialized) > 0.5
            if training:
                correlation = update_correlation(
                    current, batch_correlation, initialized, rho
                )
                self.correlation.assign(correlation)
                self.correlation_initialized.assign(1.0)
            else:
                correlation = ops.where(initialized, current, batch_correlation)
            loss = self._objective.function(z_a, z_b, t_a, t_b, correlation, **config)
        self.objective_loss_tracker.update_state(loss, sample_weight=weight)
        self.positive_similarity_tracker.update_state(
            ops.mean(
                ops.sum(
                    ops.normalize(ops.cast(z_a, "float32"), axis=-1)
                    * ops.normalize(ops.cast(z_b, "float32"), axis=-1),
                    axis=-1,
                )
            ),
            sample_weight=weight,
        )
        return loss

    def _queue_snapshot(self):
        # A copy: the queue is overwritten after this step's use.
        return ops.stop_gradient(ops.copy(ops.convert_to_tensor(self.queue)))

    def _enqueue(self, keys):
        """Puts the momentum keys `(2N, D)` of this step's views in the queue.

        Every replica enqueues the keys of the global batch, all first views
        then all second views, so the replicas' queues stay identical.
        """
        k_a, k_b = ops.split(keys, 2, axis=0)
        self.queue.assign(
            update_queue(
                ops.convert_to_tensor(self.queue),
                ops.concatenate(
                    [
                        distribute.cross_replica_concat(k_a),
                        distribute.cross_replica_concat(k_b),
                    ],
                    axis=0,
                ),
            )
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        return distribute.reducible_logs(self, logs)

    # === Training entry points ===

    def compile(self, optimizer="auto", loss=None, **kwargs):
        """Configures training; the objective is built in, so `loss` is not
        accepted.

        Args:
            optimizer: `"auto"` (default) for SimCLR's optimizer (its
                Section B.1): `keras_simclr.optimizers.LARS` with momentum
                0.9, weight decay 1e-6 (batch-norm parameters and biases
                excluded) and learning rate 0.3, the paper's rate per 256
                images; scale it to your batch with
                `keras_simclr.optimizers.scale_learning_rate` and add a
                warm-up and cosine decay (`WarmupCosineDecay`) for long
                runs. Or any Keras optimizer.
            **kwargs: other arguments of `keras.Model.compile`.
        """
        if optimizer == "auto":
            optimizer = LARS(0.3, momentum=0.9, weight_decay=1e-6)
        if loss is not None:
            raise ValueError(
                "SimCLRPretrainer computes its own objective (NT-Xent, plus "
                "the probe's cross-entropy); do not pass `loss`. "
                f"Received: loss={loss!r}"
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        restore_compiled_state(self, config)

    def fit(self, x=None, y=None, batch_size=None, **kwargs):
        distribute.check_supported()
        if keras.backend.backend() == "tensorflow":
            cpu_defaults.check_onednn()
        self._validate_data(x, y, batch_size, kwargs.get("sample_weight"))
        if not self.built:
            # Callbacks such as BackupAndRestore need the variables at once.
            input_shape = _input_shape(x)
            if input_shape is not None:
                with distribute.model_scope(self):
                    self.build(input_shape)
        validation_data = kwargs.get("validation_data")
        if isinstance(validation_data, (tuple, list)):
            self._validate_data(
                validation_data[0],
                validation_data[1] if len(validation_data) > 1 else None,
                kwargs.get("validation_batch_size") or batch_size,
                None,
                prefix="validation_data",
            )
        elif _validation.is_tf_dataset(validation_data):
            self._validate_dataset(validation_data, "validation_data")
            kwargs["validation_data"] = _validation.check_batches_hold_two_images(
                validation_data, "validation_data"
            )
        if _validation.is_tf_dataset(x):
            x = _validation.check_batches_hold_two_images(x, "x")
        with _pipeline_errors_as_value_errors(), distribute.global_batch_norm(
            self,
            [
                self.encoder,
                self.projection_head,
                self.prediction_head,
                self.target_encoder,
                self.target_projection_head,
            ],
            enabled=self.global_bn,
        ):
            return super().fit(x, y, batch_size=batch_size, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, **kwargs):
        self._validate_data(x, y, batch_size, kwargs.get("sample_weight"))
        if not _validation.is_tf_dataset(x):
            return super().evaluate(x, y, batch_size=batch_size, **kwargs)
        x = _validation.check_batches_hold_two_images(x, "x")
        # On JAX, Keras's evaluate() lifts the variables' values out of the
        # model (and donates their buffers to the compiled step) and puts
        # them back only when it ends normally: an error from the pipeline
        # would leave the model without weights. evaluate() changes no model
        # variable, so copies are kept to put back.
        saved = []
        if keras.backend.backend() == "jax":
            saved = [(v, ops.copy(v.value)) for v in self.variables]
        try:
            with _pipeline_errors_as_value_errors():
                return super().evaluate(x, y, batch_size=batch_size, **kwargs)
        except ValueError:
            for variable, value in saved:
                variable.assign(value)
            raise

    def _validate_data(self, x, y, batch_size, sample_weight, prefix=None):
        """Checks what can be checked before training starts."""
        x_name = f"{prefix}[0]" if prefix else "x"
        y_name = f"{prefix}[1]" if prefix else "y"
        if sample_weight is not None:
            raise ValueError(
                "SimCLRPretrainer does not take sample weights. "
                f"Received: sample_weight of type {type(sample_weight).__name__}"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or batch_size < 2
        ):
            raise ValueError(
                "`batch_size` must be an integer >= 2: NT-Xent contrasts each "
                f"image with the others of its batch. Received: batch_size={batch_size}"
            )
        if isinstance(x, (tuple, list)) and len(x) == 2 and y is None:
            raise ValueError(
                "A pair of views must be given as a dict "
                "{'view_a': ..., 'view_b': ...}; Keras reads a tuple as "
                f"(x, y). Received: {x_name} as a {type(x).__name__} of 2 arrays"
            )
        if _validation.is_tf_dataset(x):
            self._validate_dataset(x, x_name)
            return
        if isinstance(x, dict):
            _check_view_keys(x, x_name)
            arrays = {f"{x_name}['{key}']": x[key] for key in VIEW_KEYS}
        elif x is None or not _validation.is_array_like(x):
            return
        else:
            arrays = {x_name: x}
        num_images = None
        for name, array in arrays.items():
            array = _validation.as_numpy(array, name)
            self._check_image_shape(array.shape, name)
            num_images = len(array)
            self._check_value_range(
                array[: batch_size or 32], name, views=isinstance(x, dict)
            )
        if num_images < 2:
            raise ValueError(
                f"`{x_name}` must hold at least 2 images (each image's negatives "
                f"are the others of its batch). Received: {num_images} image"
            )
        effective_batch = batch_size or 32
        if num_images % effective_batch == 1:
            raise ValueError(
                f"With {num_images} images and batch_size={effective_batch}, the "
                "last batch holds a single image, which has no negatives. "
                "Change `batch_size` or drop one image. "
                f"Received: batch_size={batch_size}"
            )
        if y is not None and _validation.is_array_like(y):
            self._check_labels(_validation.as_numpy(y, y_name), num_images, y_name)
        elif y is None and self._objective.needs_labels:
            raise ValueError(
                f"objective='{self.objective}' needs a label per image: fit on "
                f"(images, labels). Received: {y_name}=None"
            )

    def _check_labels(self, labels, num_images, name):
        self._require_probe(f"{name} of shape {np.shape(labels)}")
        _validation.check_labels(labels, num_images, name, self.num_classes)

    def _validate_dataset(self, dataset, name):
        spec = dataset.element_spec
        if isinstance(spec, tuple):
            x_spec = spec[0]
            y_spec = spec[1] if len(spec) > 1 else None
        else:
            x_spec, y_spec = spec, None
        x_specs = x_spec if isinstance(x_spec, dict) else {"": x_spec}
        if isinstance(x_spec, dict):
            _check_view_keys(x_spec, name)
        for key, item in x_specs.items():
            item_name = f"{name}['{key}']" if key else name
            if not (item.dtype.is_floating or item.dtype.is_integer):
                raise ValueError(
                    f"`{item_name}` must hold numbers. "
                    f"Received: dtype={item.dtype.name}"
                )
            self._check_image_shape(item.shape, f"{item_name} (element_spec)")
        if y_spec is not None:
            self._require_probe(f"{name} yielding labels, element_spec={spec}")
        elif self._objective.needs_labels:
            raise ValueError(
                f"objective='{self.objective}' needs a label per image: the "
                f"dataset must yield (images, labels). Received: {name} with "
                f"element_spec={spec}"
            )
        # One batch shows the batch size, the label range and the images'
        # range.
        with _pipeline_errors_as_value_errors():
            element = _validation.first_batch(dataset)
        if element is None:
            return
        x_batch = element[0] if isinstance(element, tuple) else element
        first = x_batch["view_a"] if isinstance(x_batch, dict) else x_batch
        if int(first.shape[0]) < 2:
            raise ValueError(
                f"`{name}` yields batches of {int(first.shape[0])} image; "
                "NT-Xent needs at least 2 per batch. Batch the dataset "
                "with `.batch(batch_size)`."
            )
        if isinstance(element, tuple) and len(element) > 1:
            self._check_labels(
                np.asarray(element[1]), int(first.shape[0]), f"{name} labels"
            )
        if isinstance(x_batch, dict):
            for key in VIEW_KEYS:
                self._check_value_range(
                    np.asarray(x_batch[key]), f"{name}['{key}']", views=True
                )
        else:
            self._check_value_range(np.asarray(x_batch), name, views=False)

    def _check_value_range(self, images, name, views):
        """Refuses images outside the range the model reads them in.

        Images go to the augmentation, views to the encoder: whichever
        declares a `value_range` (the library's layers and ResNet do) sets
        it. Images in [0, 1] given for the default (0, 255) would train on
        nearly black images without a word.
        """
        reader = self.encoder if views or self.augmentation is None else (
            self.augmentation
        )
        value_range = getattr(reader, "value_range", None)
        if value_range is None or not len(images):
            return
        if images.dtype.kind not in "biuf":
            return
        check_value_range(images, value_range, name)

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "augmentation": (
                    keras.saving.serialize_keras_object(self.augmentation)
                    if self.augmentation is not None
                    else None
                ),
                "projection_head": keras.saving.serialize_keras_object(
                    self.projection_head
                ),
                "temperature": self.temperature,
                "num_classes": self.num_classes,
                "objective": self.objective,
                "objective_config": dict(self.objective_config) or None,
                "prediction_head": (
                    keras.saving.serialize_keras_object(self.prediction_head)
                    if self.prediction_head is not None
                    else None
                ),
                "momentum": self.momentum,
                "momentum_schedule_steps": self.momentum_schedule_steps,
                "queue_size": self.queue_size,
                "memory_queue": self.memory_queue,
                "global_bn": self.global_bn,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Deserialising a functional model consumes parts of its config.
        config = copy.deepcopy(config)
        # Files saved before unused arguments were refused hold every
        # argument, each objective's unused ones at their old defaults.
        objective = objectives.get_objective(config.get("objective", "simclr"))
        for name in objectives.OBJECTIVE_ARGUMENTS:
            if name != "prediction_head" and not objective.uses(
                name, config.get("memory_queue", False)
            ):
                config.pop(name, None)
        for key in ("encoder", "augmentation", "projection_head", "prediction_head"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


@contextlib.contextmanager
def _pipeline_errors_as_value_errors():
    """Turns the input checks that run inside a `tf.data` pipeline (a batch
    of one image, images outside the augmentation's `value_range`), which
    TensorFlow raises as `InvalidArgumentError`, into the `ValueError` that
    arrays get."""
    try:
        yield
    except Exception as error:
        replacement = _validation.reraise_single_image_batch(
            error
        ) or value_range_error_from_graph(error)
        if replacement is None:
            raise
        raise replacement from None


def _clone(layer, name):
    """A fresh copy of `layer` (same config, new weights) named `name`."""
    config = keras.saving.serialize_keras_object(layer)
    config = copy.deepcopy(config)
    config["config"]["name"] = name
    return keras.saving.deserialize_keras_object(config)


def _check_view_keys(inputs, name="x"):
    if set(inputs.keys()) != set(VIEW_KEYS):
        raise ValueError(
            f"A dict input must have exactly the keys {VIEW_KEYS}. "
            f"Received: {name} with keys {sorted(inputs.keys())}"
        )


def _input_shape(x):
    """The input shape, batch axis `None`, of arrays or of a `tf.data` or
    `tf.distribute` dataset."""
    if _validation.is_tf_dataset(x) or _validation.is_distributed_dataset(x):
        spec = x.element_spec
        x = spec[0] if isinstance(spec, tuple) else spec
    elif not (isinstance(x, dict) or _validation.is_array_like(x)):
        return None

    def batchless(item):
        # A distributed dataset's spec may hold one spec per local replica.
        item = getattr(item, "_value_specs", [item])[0]
        shape = item.shape if hasattr(item, "shape") else np.shape(item)
        return (None,) + tuple(shape)[1:]

    if isinstance(x, dict):
        return {key: batchless(value) for key, value in x.items()}
    return batchless(x)
