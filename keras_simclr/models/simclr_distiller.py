"""SimCLR v2 distillation: a student learns a fixed teacher's predictions."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_simclr import _evaluation_transform
from keras_simclr import _data_checks
from keras_simclr import _validation
from keras_simclr.layers import data_layer
from keras_simclr.losses.distillation import distillation_loss
from keras_simclr.models import _in_step_augmentation
from keras_simclr.models._frozen_parts import FrozenPartsMixin
from keras_simclr.models.simclr_classifier import SimCLRClassifier
from keras_simclr.models.simclr_classifier import fine_tuning_optimizer
from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer
from keras_simclr.models.task import Task

# The constructor's arguments in their positional order, which still works
# (with a DeprecationWarning).
_POSITIONAL_ARGUMENTS = (
    "teacher", "student", "temperature", "labelled_loss_weight", "augmentation"
)
_DEFAULTS = {"temperature": 1.0, "labelled_loss_weight": 0.0, "augmentation": None}


@keras.saving.register_keras_serializable(package="keras_simclr")
class SimCLRDistiller(FrozenPartsMixin, Task):
    """SimCLR v2 distillation: trains a student on a fixed teacher's
    predictions, on unlabeled images.

    The third step of SimCLR v2: a fine-tuned network (the teacher, e.g. a
    `SimCLRClassifier`) labels unlabeled images with its class
    distribution, and a student network learns to predict it. The student
    can have the teacher's architecture (self-distillation, which SimCLR v2
    finds improves the teacher) or a smaller one.

    Each training step:
    1. makes one augmented view of each image with `augmentation` (if
       any); teacher and student see the same view;
    2. runs the teacher in inference mode (batch norm on its moving
       statistics), with no gradient; its weights never change: they are
       left out of the distiller's `trainable_variables`, while the
       teacher's own `trainable` flags stay as they were (the teacher can
       still be trained on its own afterwards);
    3. minimises, over the student's weights, the batch mean of
       `distillation_loss(teacher_logits, student_logits, temperature)`,
       the cross-entropy between the teacher's and the student's
       softmax at temperature `tau` (SimCLR v2 Eq. 2; no `tau ** 2`
       factor).

    With labels, `fit(images, labels)` minimises SimCLR v2's Eq. 3,
    `(1 - w) * distillation + w * cross_entropy(labels, student_logits)`,
    with `w = labelled_loss_weight` (the paper's `alpha` is `1 - w`) and the
    labelled cross-entropy at temperature 1. With the default `w = 0`
    labels are only used to report `labelled_loss` and `accuracy`. Without
    labels the loss is the distillation loss alone, whatever `w`.

    Metrics: `distillation_loss`, `teacher_agreement` (the fraction of
    images on which the student's and the teacher's most likely classes
    agree), and with labels `labelled_loss` and `accuracy` (the student's).

    `call(images)` returns the student's logits (in training, where the
    loss needs both, a dict of the student's `"logits"` and the
    `"teacher_logits"` on the augmented view). `evaluate()` scores the
    images after the evaluation transform, teacher and student alike.

    Evaluation transform: at inference (`training=False`: `predict`,
    `evaluate`, `export_outputs`), images go through `evaluation_views`
    first: images whose height and width equal the view size of
    `evaluation_transform` pass unchanged, images of another size get its
    inference call (`training=False`). The transform is that of
    `augmentation` when it declares a view size (the library's augmentation
    layers, with their `image_size`; for `SimCLRAugmentation`'s
    `"imagenet"` preset, a centre crop of 87.5% of the image resized
    bicubically to the view size), else the teacher's
    `evaluation_transform` (a `SimCLRClassifier` built from a pretrainer
    has the pretrainer's), else `augmentation`'s inference call if there is
    an augmentation, else none. It is restored with the model, from the
    augmentation or the teacher.

    Teacher and student are passed by keyword,
    `SimCLRDistiller(teacher=..., student=...)`: Keras's own distillation
    example takes the student first, and swapped roles would train the
    fine-tuned network on the untrained one's predictions. Positional
    arguments still work, with a `DeprecationWarning`. A call whose roles
    are clearly swapped is refused whichever way it is written: an untrained
    `SimCLRClassifier` as the teacher (its final layer is still zero, so
    its logits are the same for every image) while the student has been
    trained (a non-zero final layer, or optimizer steps of its own).

    Args:
        teacher: a Keras model or layer that maps images to logits
            `(N, num_classes)`, e.g. a fine-tuned `SimCLRClassifier`. The
            distiller never trains it and never changes it.
        student: a Keras model or layer that maps the same images to logits
            over the same classes; a different object from the teacher.
        temperature: positive float, the softmax temperature `tau` of the
            distillation loss; 1.0 by default.
        labelled_loss_weight: float in [0, 1), the weight `w` of the
            labelled cross-entropy when `fit` gets labels (see above).
        augmentation: a layer that maps images to one random view (e.g. a
            `keras_simclr.layers.SimCLRAugmentation`), applied in training
            only; None to use the images as given.
        **kwargs: passed to `keras.Model` (name, dtype, ...).

    Raises:
        ValueError: if an argument is invalid, naming the argument (a
            `SimCLRPretrainer` as teacher or student, roles clearly
            swapped); at build time if teacher and student predict
            different numbers of classes.

    Example:

    ```python
    teacher = keras_simclr.models.SimCLRClassifier(
        pretrainer, num_classes=10, head_layers=1
    )
    ...  # teacher.fit(labelled_images, labels)
    student = keras_simclr.models.SimCLRClassifier(
        keras_simclr.models.ResNet(18, cifar_stem=True), num_classes=10
    )
    distiller = keras_simclr.models.SimCLRDistiller(
        teacher=teacher,
        student=student,
        augmentation=keras_simclr.layers.SimCLRAugmentation(32, preset="cifar"),
    )
    distiller.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    distiller.fit(unlabeled_images, batch_size=256, epochs=100)
    logits = distiller.predict(test_images)  # the student's
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2006.10029), SimCLR v2,
          Section 2 (Eq. 2 and 3).
        - [Hinton et al., 2015](https://arxiv.org/abs/1503.02531),
          Distilling the Knowledge in a Neural Network.
    """

    config_layers = {
        "teacher": "teacher",
        "student": "student",
        "augmentation": "augmentation",
    }
    builtin_loss = "loss (distillation, plus the labelled cross-entropy)"
    noun = "distiller"
    unweighted_reason = "the distillation loss weighs every image alike"

    def __init__(
        self,
        *args,
        teacher=None,
        student=None,
        temperature=1.0,
        labelled_loss_weight=0.0,
        augmentation=None,
        **kwargs,
    ):
        if args:
            given = {
                "teacher": teacher,
                "student": student,
                "temperature": temperature,
                "labelled_loss_weight": labelled_loss_weight,
                "augmentation": augmentation,
            }
            given.update(_positional_arguments(args, given))
            teacher, student = given["teacher"], given["student"]
            temperature = given["temperature"]
            labelled_loss_weight = given["labelled_loss_weight"]
            augmentation = given["augmentation"]
        super().__init__(**kwargs)
        for name, value in (("teacher", teacher), ("student", student)):
            _validation.check_layer(
                value,
                name,
                description="a Keras model or layer that maps images to logits",
            )
            if isinstance(value, SimCLRPretrainer):
                raise ValueError(
                    f"`{name}` must map images to logits, such as a "
                    "SimCLRClassifier; a SimCLRPretrainer maps them to the "
                    "inputs of its self-supervised objective. Build a "
                    "classifier on it, `SimCLRClassifier(pretrainer, "
                    "num_classes=...)`, and fine-tune it to make a teacher. "
                    f"Received: {name}=SimCLRPretrainer (name={value.name!r})"
                )
        if teacher is student:
            raise ValueError(
                "`teacher` and `student` must be different objects: the "
                "teacher is frozen while the student trains. For "
                "self-distillation, build a second model of the same "
                f"architecture. Received: teacher is student ({teacher.name})"
            )
        teacher_classes = getattr(teacher, "num_classes", None)
        student_classes = getattr(student, "num_classes", None)
        if isinstance(teacher_classes, int) and isinstance(student_classes, int) and (
            teacher_classes != student_classes
        ):
            raise ValueError(
                "`teacher` and `student` must predict the same classes. "
                f"Received: teacher.num_classes={teacher_classes}, "
                f"student.num_classes={student_classes}"
            )
        _check_roles(teacher, student)
        labelled_loss_weight = _validation.check_number(
            labelled_loss_weight,
            "labelled_loss_weight",
            minimum=0,
            maximum=1,
            include_maximum=False,
        )
        temperature = _validation.check_positive_number(temperature, "temperature")
        _validation.check_layer(augmentation, "augmentation", allow_none=True)
        # Teacher and student read the augmentation's views.
        data_layer.check_views_match(
            augmentation,
            {
                "teacher": data_layer.inference_value_range(teacher, "the teacher"),
                "student": data_layer.inference_value_range(student, "the student"),
            },
        )

        # === Layers ===
        self.teacher = teacher
        self.student = student
        self.augmentation = augmentation

        # === Config ===
        self.temperature = temperature
        self.labelled_loss_weight = labelled_loss_weight

        self.distillation_loss_tracker = keras.metrics.Mean(
            name="distillation_loss"
        )
        self.teacher_agreement_tracker = keras.metrics.Mean(
            name="teacher_agreement"
        )
        self.labelled_loss_tracker = keras.metrics.Mean(name="labelled_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(
            name="accuracy"
        )

    def _frozen_layers(self):
        return [self.teacher]

    def _nested_frozen_parts(self):
        return [self.student] if isinstance(self.student, FrozenPartsMixin) else []

    # === Building ===

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        view_shape = input_shape
        if self.augmentation is not None:
            if not self.augmentation.built:
                self.augmentation.build(input_shape)
            view_shape = tuple(self.augmentation.compute_output_shape(input_shape))
        elif self.evaluation_transform is not None and len(input_shape) == 4:
            size = _evaluation_transform.view_size(
                self.evaluation_transform, input_shape
            )
            if size is not None:
                view_shape = (input_shape[0], *size, input_shape[-1])
        output_shapes = {}
        for name, model in (("teacher", self.teacher), ("student", self.student)):
            if not model.built:
                model.build(view_shape)
            shape = _output_shape(model, view_shape, name)
            if len(shape) != 2:
                raise ValueError(
                    f"`{name}` must map images to logits (batch, num_classes); "
                    f"for input {view_shape} it gives {shape}. "
                    f"Received: {name}={model.name}"
                )
            output_shapes[name] = shape
        if output_shapes["teacher"][-1] != output_shapes["student"][-1]:
            raise ValueError(
                "`teacher` and `student` must predict the same classes. "
                f"Received: teacher logits of shape {output_shapes['teacher']}, "
                f"student logits of shape {output_shapes['student']}"
            )

    def compute_output_shape(self, input_shape):
        return tuple(self.student.compute_output_shape(tuple(input_shape)))

    # === Forward pass ===

    @property
    def evaluation_transform(self):
        """The layer whose inference call is the evaluation transform (see
        the class docstring), or None."""
        own = _evaluation_transform.transform_layer(self.augmentation)
        if _evaluation_transform.view_size(own) is not None:
            return own
        teacher_transform = getattr(self.teacher, "evaluation_transform", None)
        if isinstance(teacher_transform, keras.layers.Layer):
            return teacher_transform
        return own

    def call(self, images, training=False):
        if not training:
            return self.student(self.evaluation_views(images), training=False)
        if self.augmentation is not None:
            # As the pretrainer's views: one XLA cluster on TensorFlow.
            images = _in_step_augmentation.run(
                self, self.augmentation, self._augment, images
            )
        return {
            "logits": self.student(images, training=True),
            "teacher_logits": self._teacher_logits(images),
        }

    def _augment(self, images):
        return self.augmentation(images, training=True)

    def _teacher_logits(self, images):
        return ops.stop_gradient(self.teacher(images, training=False))

    def export_outputs(self, images):
        """Inference outputs of the student for export, on
        `evaluation_views(images)`: its own `export_outputs` if it has one
        (a `SimCLRClassifier`), else `{"logits": student(images)}`."""
        images = self.evaluation_views(images)
        if hasattr(self.student, "export_outputs"):
            return self.student.export_outputs(images)
        return {"logits": self.student(images, training=False)}

    # === Objective ===

    def compute_task_loss(self, x, y, y_pred, training):
        if isinstance(y_pred, dict):
            student_logits = y_pred["logits"]
            teacher_logits = y_pred["teacher_logits"]
        else:
            # evaluate(): the evaluation views, teacher in inference mode.
            student_logits = y_pred
            teacher_logits = self._teacher_logits(self.evaluation_views(x))
        student_logits = ops.cast(student_logits, "float32")
        teacher_logits = ops.cast(teacher_logits, "float32")
        distillation = ops.mean(
            distillation_loss(teacher_logits, student_logits, self.temperature)
        )
        # Weighted by the batch's images, as Keras weights its `loss`.
        weight = ops.cast(ops.shape(student_logits)[0], "float32")
        self.distillation_loss_tracker.update_state(
            distillation, sample_weight=weight
        )
        self.teacher_agreement_tracker.update_state(
            ops.mean(
                ops.cast(
                    ops.equal(
                        ops.argmax(student_logits, axis=-1),
                        ops.argmax(teacher_logits, axis=-1),
                    ),
                    "float32",
                )
            ),
            sample_weight=weight,
        )
        total = distillation
        if y is not None:
            labels = ops.reshape(ops.cast(y, "int32"), (-1,))
            labelled = ops.mean(
                keras.losses.sparse_categorical_crossentropy(
                    labels, student_logits, from_logits=True
                )
            )
            self.labelled_loss_tracker.update_state(labelled, sample_weight=weight)
            self.accuracy_tracker.update_state(labels, student_logits)
            weight = self.labelled_loss_weight
            total = (1.0 - weight) * distillation + weight * labelled
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):
            y_pred = y_pred["logits"]
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        if y is None:
            # Without labels there is no labelled loss or accuracy to report.
            for name in (self.labelled_loss_tracker.name, self.accuracy_tracker.name):
                logs.pop(name, None)
        return logs

    # === Training entry points ===

    def default_optimizer(self):
        """SGD with Nesterov momentum 0.9 and learning rate 0.1, the
        optimizer with which `SimCLRClassifier` fine-tunes (the official
        code's `--optimizer=momentum`), since the student is trained as a
        classifier on the teacher's labels; scale the rate to your batch
        size."""
        return fine_tuning_optimizer()

    def _labels_num_classes(self, x):
        """The student's number of classes, from its output shape."""
        classes = getattr(self.student, "num_classes", None)
        if isinstance(classes, int):
            return classes
        if _data_checks.is_tf_dataset(x):
            x = _data_checks.split_element(x.element_spec)[0]
        shape = getattr(x, "shape", None)
        if shape is None:
            return None
        try:
            output = self.student.compute_output_shape((None,) + tuple(shape)[1:])
        except Exception:
            return None
        return output[-1] if isinstance(output[-1], int) else None

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "temperature": self.temperature,
                "labelled_loss_weight": self.labelled_loss_weight,
            }
        )
        return config


def _output_shape(model, input_shape, name):
    """The output shape of teacher or student `model` on `input_shape`; a
    subclassed model without `compute_output_shape` is traced
    symbolically."""
    try:
        return tuple(model.compute_output_shape(input_shape))
    except NotImplementedError:
        pass
    try:
        output = model.compute_output_spec(keras.KerasTensor(input_shape))
    except Exception as error:
        raise ValueError(
            f"`{name}` must map images to logits (batch, num_classes); its "
            f"output on images of shape {input_shape} cannot be computed "
            f"({type(error).__name__}: {error}). Received: {name}={model.name} "
            f"({type(model).__name__})"
        ) from error
    if not hasattr(output, "shape"):
        raise ValueError(
            f"`{name}` must map images to one tensor of logits (batch, "
            f"num_classes); it returns {type(output).__name__}. Received: "
            f"{name}={model.name} ({type(model).__name__})"
        )
    return tuple(output.shape)


def _positional_arguments(args, given):
    """The constructor's positional `args` by name, with a warning."""
    if len(args) > len(_POSITIONAL_ARGUMENTS):
        raise TypeError(
            f"SimCLRDistiller takes at most {len(_POSITIONAL_ARGUMENTS)} "
            f"positional arguments ({', '.join(_POSITIONAL_ARGUMENTS)}); pass "
            f"them by keyword. Received: {len(args)} positional arguments"
        )
    named = dict(zip(_POSITIONAL_ARGUMENTS, args))
    for name in named:
        default = _DEFAULTS.get(name)
        if given[name] is not default and not (
            isinstance(given[name], float) and given[name] == default
        ):
            raise TypeError(
                f"SimCLRDistiller got `{name}` both by position and by keyword."
            )
    warnings.warn(
        "Passing the arguments of SimCLRDistiller by position is deprecated "
        "and will stop working in a future release: the order of teacher and "
        "student is easy to swap (Keras's distillation example takes the "
        "student first). Pass them by keyword: SimCLRDistiller(teacher=..., "
        f"student=...). Received: {len(args)} positional argument(s), read as "
        f"{', '.join(named)}",
        DeprecationWarning,
        stacklevel=3,
    )
    return named


def _numpy(variable):
    # Through `.numpy()` where the tensor has it: the `__array__` of
    # TensorFlow and PyTorch tensors warns under NumPy 2 (here while a saved
    # distiller loads).
    value = variable.value
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    if hasattr(value, "numpy"):
        return value.numpy()
    return np.asarray(value)


def _untrained_classifier(model):
    """Whether `model` is a SimCLRClassifier whose final layer is at its
    zero initialisation (or not made yet): its logits are the same for every
    image."""
    if not isinstance(model, SimCLRClassifier):
        return False
    layer = model.linear_classifier
    return not layer.built or not np.any(_numpy(layer.kernel))


def _trained(model):
    """Whether `model` shows that it has been trained: a SimCLRClassifier
    whose final layer moved from zero, or a model with optimizer steps."""
    if isinstance(model, SimCLRClassifier) and not _untrained_classifier(model):
        return True
    optimizer = getattr(model, "optimizer", None)
    iterations = getattr(optimizer, "iterations", None)
    return iterations is not None and int(_numpy(iterations)) > 0


def _check_roles(teacher, student):
    """Refuses a teacher and a student whose roles are clearly swapped."""
    if _untrained_classifier(teacher) and _trained(student):
        raise ValueError(
            "`teacher` and `student` look swapped: the teacher is an untrained "
            "SimCLRClassifier (its final layer is still zero, so it gives the "
            "same logits for every image) and the student has been trained. "
            "The teacher is the fine-tuned network the student learns from: "
            "pass them by keyword, SimCLRDistiller(teacher=fine_tuned, "
            f"student=new_model). Received: teacher={teacher.name}, "
            f"student={student.name}"
        )
