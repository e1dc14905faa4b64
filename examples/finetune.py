r"""Fine-tunes a pretrained encoder on a fraction of the labels (SimCLR v2, step 2).

Reads the run directory that `examples/pretrain.py` wrote (its
`pretrainer.keras` and `flags.json`), takes a class-balanced fraction of the
training labels, and trains a `SimCLRClassifier` on it:

    python examples/pretrain.py --model_dir=runs/digits
    python examples/finetune.py --model_dir=runs/digits --label_fraction=0.1

`--mode=linear` is the standard linear evaluation instead (encoder frozen,
batch norm in inference mode); `--head_layers` picks the projection-head layer
to fine-tune from (SimCLR v2: 1; 0 is the encoder output, SimCLR v1).

Writes to `--model_dir`:
    classifier.keras   the fine-tuned classifier (encoder, kept head layers, linear layer)
    finetune.json      flags, labelled images used, test top-1 / top-5, wall time

`--baseline` also trains the same classifier from a randomly initialised
encoder on the same labels, for comparison.

`--precision` (default auto: `mixed_bfloat16` where the hardware computes
bfloat16 natively, float32 elsewhere) is this run's own: the pretrainer is
copied into it whatever precision pretraining saved it in
(`keras_simclr.config.with_precision`).
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
    "Run directory written by examples/pretrain.py; the classifier is written there too.",
)
flags.DEFINE_enum(
    "mode", "finetune", ["finetune", "linear"],
    "finetune: everything trains. linear: linear evaluation, only the last layer trains.",
)
flags.DEFINE_integer(
    "head_layers", 1,
    "Projection-head layers kept under the classifier (SimCLR v2: 1; 0: the encoder output).",
    lower_bound=0,
)
flags.DEFINE_float(
    "label_fraction", 0.1,
    "Fraction of the training labels used, class-balanced (SimCLR v2: 0.01 and "
    "0.1); in (0, 1].",
)
flags.register_validator(
    "label_fraction",
    lambda value: 0.0 < value <= 1.0,
    message="--label_fraction must be a number in (0, 1], e.g. 0.01 or 0.1.",
)
flags.DEFINE_integer("epochs", 30, "Passes over the labelled images.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Labelled images per step.", lower_bound=1)
flags.DEFINE_float(
    "learning_rate", 0.1,
    "Learning rate of SGD with Nesterov momentum 0.9, per 256 images (scaled "
    "linearly with --batch_size), cosine-decayed to 0.",
)
flags.DEFINE_integer("max_images", None, "Use at most this many training images before taking the fraction.")
flags.DEFINE_boolean("baseline", False, "Also train the classifier from a random encoder on the same labels.")
flags.DEFINE_integer(
    "seed", 0, "Seed of the label fraction, initialisation and data order.",
    lower_bound=0,
)
flags.DEFINE_integer("verbose", 2, example_data.VERBOSE_HELP)
example_data.define_precision_flag()

# Checked as the flags are parsed: one line naming the flag and its value,
# before anything loads.
for _name, _condition, _requirement in (
    ("learning_rate", lambda x: x > 0, "positive"),
    ("max_images", lambda n: n >= 1, "a positive number of images (or left out for all)"),
    ("verbose", lambda n: n in (0, 1, 2, 3), "0, 1, 2 or 3"),
):
    example_data.check_flag(_name, _condition, _requirement)


def train_classifier(classifier, images, labels, test_images, test_labels):
    """Fits `classifier` with the flags' recipe; returns its test metrics."""
    import keras

    steps = max(1, -(-len(images) // FLAGS.batch_size)) * FLAGS.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        FLAGS.learning_rate * FLAGS.batch_size / 256, decay_steps=steps
    )
    classifier.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
    )
    start = time.time()
    classifier.fit(
        images, labels, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
        verbose=example_data.hide_noisy_logs(FLAGS.verbose),
    )
    seconds = time.time() - start
    metrics = classifier.evaluate(
        test_images, test_labels, batch_size=256, verbose=0, return_dict=True
    )
    result = {"top1": float(metrics["accuracy"]), "seconds": round(seconds, 1)}
    if "top_5_accuracy" in metrics:
        result["top5"] = float(metrics["top_5_accuracy"])
    return result


def main(argv):
    del argv
    import keras

    import keras_simclr

    precision = example_data.use_precision(FLAGS.precision)
    try:
        pretraining_flags = example_data.load_pretraining_flags(FLAGS.model_dir)
        train_images, train_labels, test_images, test_labels = (
            example_data.load_pretraining_dataset(pretraining_flags, FLAGS.max_images)
        )
    except example_data.UsageError as error:
        raise app.UsageError(str(error))
    if train_labels is None:
        raise app.UsageError(
            f"Fine-tuning needs labels, and the images of --model_dir={FLAGS.model_dir} "
            "have none: examples/pretrain.py read them from "
            f"{pretraining_flags.get('data_dir')}, a folder without class subfolders."
        )
    pretrainer_path = os.path.join(FLAGS.model_dir, "pretrainer.keras")
    if not os.path.exists(pretrainer_path):
        raise app.UsageError(
            f"--model_dir={FLAGS.model_dir} holds no pretrainer.keras: let "
            "examples/pretrain.py finish there first (rerun it to resume)."
        )
    try:
        labelled = keras_simclr.data.label_fraction_indices(
            train_labels, FLAGS.label_fraction, seed=FLAGS.seed
        )
    except ValueError as error:
        raise app.UsageError(str(error))
    keras.utils.set_random_seed(FLAGS.seed)
    images, labels = train_images[labelled], train_labels[labelled]
    num_classes = int(max(train_labels.max(), test_labels.max()) + 1)
    print(
        f"{len(labelled)} labelled images ({FLAGS.label_fraction:g} of "
        f"{len(train_images)}, class-balanced), {len(test_images)} test images, "
        f"{num_classes} classes; backend={keras.backend.backend()}"
    )

    # Saved in the pretraining run's precision; fine-tuned in this run's.
    pretrainer = keras_simclr.config.with_precision(
        keras.saving.load_model(pretrainer_path, compile=False), precision
    )
    try:
        classifier = keras_simclr.models.SimCLRClassifier(
            pretrainer, num_classes, head_layers=FLAGS.head_layers, mode=FLAGS.mode
        )
    except ValueError as error:
        raise app.UsageError(f"--head_layers: {error}")
    results = {
        "backend": keras.backend.backend(),
        "flags": {name: FLAGS[name].value for name in _OWN_FLAGS},
        "precision": precision.policy,
        "precision_reason": precision.reason,
        "labelled_images": int(len(labelled)),
        "train_images": int(len(train_images)),
        "test_images": int(len(test_images)),
        "pretrained": train_classifier(
            classifier, images, labels, test_images, test_labels
        ),
    }
    classifier.save(os.path.join(FLAGS.model_dir, "classifier.keras"))
    if FLAGS.baseline:
        # The same network and head layers, from random weights: what the
        # pretraining is worth at this label fraction.
        random_pretrainer = keras_simclr.models.SimCLRPretrainer.from_config(
            pretrainer.get_config()
        )
        random_pretrainer.build(test_images.shape)
        baseline = keras_simclr.models.SimCLRClassifier(
            random_pretrainer, num_classes, head_layers=FLAGS.head_layers,
            mode=FLAGS.mode,
        )
        results["random_init"] = train_classifier(
            baseline, images, labels, test_images, test_labels
        )
    with open(os.path.join(FLAGS.model_dir, "finetune.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(
        f"\nTest top-1 after {FLAGS.mode} on {len(labelled)} labels "
        f"(head_layers={FLAGS.head_layers}):\n"
        f"  SimCLR-pretrained : {results['pretrained']['top1']:.4f}"
    )
    if FLAGS.baseline:
        print(f"  randomly initialised : {results['random_init']['top1']:.4f}")
    print(f"classifier saved in {FLAGS.model_dir}/classifier.keras")


_OWN_FLAGS = [
    "model_dir", "mode", "head_layers", "label_fraction", "epochs", "batch_size",
    "learning_rate", "max_images", "baseline", "seed", "precision",
]

if __name__ == "__main__":
    example_data.run(main)
