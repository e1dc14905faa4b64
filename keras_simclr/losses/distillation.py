"""The distillation loss of SimCLR v2: teacher to student on unlabeled images."""

from keras import ops

from keras_simclr import _validation


def distillation_loss(teacher_logits, student_logits, temperature=1.0):
    """Per-example distillation loss of SimCLR v2 (its Eq. 2).

    The cross-entropy `-sum_y P_T(y | x; tau) log P_S(y | x; tau)` between
    the teacher's and the student's temperature-scaled softmax,
    `P(y | x; tau) = softmax(logits / tau)[y]`. No gradient flows into the
    teacher's logits. Unlike Hinton et al.'s distillation, the loss is not
    multiplied by `tau ** 2`: SimCLR v2's Eq. 2 and 3 have no such factor.

    Args:
        teacher_logits: `(batch, num_classes)` logits of the teacher.
        student_logits: `(batch, num_classes)` logits of the student.
        temperature: positive float `tau`.

    Returns:
        A `(batch,)` float32 tensor, one loss per example.
    """
    temperature = _validation.check_positive_number(temperature, "temperature")
    teacher_logits = ops.cast(ops.convert_to_tensor(teacher_logits), "float32")
    student_logits = ops.cast(ops.convert_to_tensor(student_logits), "float32")
    if (
        len(teacher_logits.shape) != 2
        or len(student_logits.shape) != 2
        or teacher_logits.shape[-1] != student_logits.shape[-1]
    ):
        raise ValueError(
            "`teacher_logits` and `student_logits` must both have shape "
            "(batch, num_classes), with the same classes. Received: "
            "teacher_logits.shape="
            f"{tuple(teacher_logits.shape)}, student_logits.shape="
            f"{tuple(student_logits.shape)}"
        )
    teacher_probabilities = ops.stop_gradient(
        ops.softmax(teacher_logits / temperature, axis=-1)
    )
    student_log_probabilities = ops.log_softmax(
        student_logits / temperature, axis=-1
    )
    return -ops.sum(teacher_probabilities * student_log_probabilities, axis=-1)
