r"""Distils a fine-tuned classifier into a student on unlabeled images (SimCLR v2, step 3).

Reads the run directory of `examples/pretrain.py` and `examples/finetune.py`
(its `classifier.keras` is the teacher) and trains a student ResNet to match
the teacher's softened class distribution on all the training images, their
labels unused:

    python examples/finetune.py --model_dir=runs/digits --label_fraction=0.1
    python examples/distill.py --model_dir=runs/digits

By default the student has the teacher's architecture (self-distillation);
`--student_depth` and `--student_width_multiplier` make it smaller or larger.
The labelled cross-entropy term of SimCLR v2's eq. 3 is left out here, as the
paper's main experiments do; `SimCLRDistiller(labelled_loss_weight=...)` adds it
when `fit` gets labels.

`--precision` (default auto: `mixed_bfloat16` where the hardware computes
bfloat16 natively, float32 elsewhere) is this run's own: the student is made
in it and the teacher copied into it (`keras_simclr.config.with_precision`).

Writes to `--model_dir`:
    student.keras   the student classifier
    distill.json    flags, teacher and student test top-1, their agreement, wall time
"""

# First, before TensorFlow loads (it reads these settings once) and before
# JAX starts: no C++ log lines unless TF_CPP_MIN_LOG_LEVEL says otherwise
# (example_data imports neither); importing keras_simclr turns oneDNN on,
# and XNNPACK speeds up XLA's CPU convolutions (keras_simclr.cpu_defaults).
import example_data

with example_data.quiet_logs():
    from keras_simclr import cpu_defaults  # noqa: E402

cpu_defaults.enable_fast_xla_cpu()

import json
import os
import time

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "model_dir", "runs/pretrain",
    "Run directory holding classifier.keras (examples/finetune.py); the student is written there.",
)
flags.DEFINE_integer("student_depth", None, "Student ResNet depth (default: the teacher's).")
flags.DEFINE_float(
    "student_width_multiplier", None,
    "Student ResNet width; fractions such as 0.25 or 0.5 make small students "
    "(default: the teacher's)."
)
flags.DEFINE_float("temperature", 1.0, "Distillation temperature tau, positive.")
flags.DEFINE_integer("epochs", 20, "Passes over the unlabeled training images.")
flags.DEFINE_integer("batch_size", 128, "Images per step.")
flags.DEFINE_float(
    "learning_rate", 0.1,
    "Learning rate of SGD with Nesterov momentum 0.9, per 256 images, cosine-decayed to 0.",
)
flags.DEFINE_integer("max_images", None, "Use at most this many training images.")
flags.DEFINE_integer("seed", 0, "Seed of the student's initialisation, crops and data order.")
flags.DEFINE_integer("verbose", 2, example_data.VERBOSE_HELP)
example_data.define_precision_flag()

# Checked as the flags are parsed: one line naming the flag and its value,
# before anything loads.
for _name, _condition, _requirement in (
    ("student_depth", lambda n: n in (18, 34, 50, 101, 152, 200),
     "one of 18, 34, 50, 101, 152 and 200"),
    ("student_width_multiplier", lambda x: x > 0, "positive"),
    ("temperature", lambda x: x > 0, "positive"),
    ("epochs", lambda n: n >= 1, "a positive number of epochs"),
    ("batch_size", lambda n: n >= 1, "a positive number of images"),
    ("learning_rate", lambda x: x > 0, "positive"),
    ("max_images", lambda n: n >= 1, "a positive number of images (or left out for all)"),
    ("seed", lambda n: n >= 0, "at least 0"),
    ("verbose", lambda n: n in (0, 1, 2, 3), "0, 1, 2 or 3"),
):
    example_data.check_flag(_name, _condition, _requirement)


def main(argv):
    del argv
    import keras
    import numpy as np

    import keras_simclr

    precision = example_data.use_precision(FLAGS.precision)
    try:
        pretraining_flags = example_data.load_pretraining_flags(FLAGS.model_dir)
        train_images, train_labels, test_images, test_labels = (
            example_data.load_pretraining_dataset(pretraining_flags, FLAGS.max_images)
        )
    except example_data.UsageError as error:
        raise app.UsageError(str(error))
    teacher_path = os.path.join(FLAGS.model_dir, "classifier.keras")
    if not os.path.exists(teacher_path):
        raise app.UsageError(
            f"--model_dir needs the teacher {teacher_path}: run "
            "examples/finetune.py on it first."
        )
    keras.utils.set_random_seed(FLAGS.seed)
    # Saved in the fine-tuning run's precision; run in this run's.
    teacher = keras_simclr.config.with_precision(
        keras.saving.load_model(teacher_path, compile=False), precision
    )
    num_classes = teacher.num_classes
    image_size = train_images.shape[1]

    student_encoder = keras_simclr.models.ResNet(
        depth=FLAGS.student_depth or pretraining_flags["resnet_depth"],
        width_multiplier=(
            FLAGS.student_width_multiplier or pretraining_flags["width_multiplier"]
        ),
        sk_ratio=pretraining_flags.get("sk_ratio", 0.0),
        cifar_stem=pretraining_flags["cifar_stem"],
        input_shape=(image_size, image_size, 3),
    )
    student = keras_simclr.models.SimCLRClassifier(student_encoder, num_classes)
    try:
        distiller = keras_simclr.models.SimCLRDistiller(
            teacher=teacher,
            student=student,
            temperature=FLAGS.temperature,
            # As fine-tuning in SimCLR v2: random crops and flips, no colour.
            augmentation=keras_simclr.layers.RandomResizedCrop(
                image_size, image_size, horizontal_flip_probability=0.5,
                seed=FLAGS.seed,
            ),
        )
    except ValueError as error:
        raise app.UsageError(str(error))

    images = train_images
    steps = max(1, len(images) // FLAGS.batch_size) * FLAGS.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        FLAGS.learning_rate * FLAGS.batch_size / 256, decay_steps=steps
    )
    distiller.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
    )
    start = time.time()
    distiller.fit(
        images, batch_size=min(FLAGS.batch_size, len(images)),
        epochs=FLAGS.epochs,
        verbose=example_data.hide_noisy_logs(FLAGS.verbose),
    )
    seconds = time.time() - start
    student.save(os.path.join(FLAGS.model_dir, "student.keras"))

    teacher_predictions = np.argmax(teacher.predict(test_images, verbose=0), axis=-1)
    student_predictions = np.argmax(student.predict(test_images, verbose=0), axis=-1)
    results = {
        "backend": keras.backend.backend(),
        "flags": {name: FLAGS[name].value for name in _OWN_FLAGS},
        "precision": precision.policy,
        "precision_reason": precision.reason,
        "distilled_images": int(len(images)),
        "test_images": int(len(test_images)),
        "teacher_top1": float(np.mean(teacher_predictions == test_labels)),
        "student_top1": float(np.mean(student_predictions == test_labels)),
        "agreement": float(np.mean(student_predictions == teacher_predictions)),
        "student_parameters": int(student.count_params()),
        "teacher_parameters": int(teacher.count_params()),
        "seconds": round(seconds, 1),
    }
    with open(os.path.join(FLAGS.model_dir, "distill.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(
        f"\nTest top-1 ({len(test_images)} images):\n"
        f"  teacher : {results['teacher_top1']:.4f}\n"
        f"  student : {results['student_top1']:.4f} "
        f"(agrees with the teacher on {results['agreement']:.4f})\n"
        f"student saved in {FLAGS.model_dir}/student.keras"
    )


_OWN_FLAGS = [
    "model_dir", "student_depth", "student_width_multiplier", "temperature",
    "epochs", "batch_size",
    "learning_rate", "max_images", "seed", "precision",
]

if __name__ == "__main__":
    example_data.run(main)
