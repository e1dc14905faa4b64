r"""Exports the models of a run as TensorFlow SavedModels, from any backend.

Reads the run directory of the other example scripts and exports each model
it holds (or those named by --models) to `--model_dir/saved_model/<model>`:

    python examples/export.py --model_dir=runs/digits

Each SavedModel's `serving_default` signature takes raw uint8 images
`[batch, height, width, 3]` of any size (resized inside) and returns a dict:
`features` and `projection` for the pretrainer (and `logits` of its linear
probe), `features` for the encoder, `features`, `head_features` and `logits`
for the classifier and the student. The script then loads every export with
`tf.saved_model.load`, as a serving process would, and checks it against the
Keras model on the held-out images; `export.json` records the largest
difference.
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

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS

MODELS = ["pretrainer", "encoder", "classifier", "student"]

flags.DEFINE_string("model_dir", "runs/pretrain", "Run directory written by the other example scripts.")
flags.DEFINE_list(
    "models", None,
    f"Which of {MODELS} to export (default: every one the run directory holds).",
)
flags.DEFINE_string(
    "export_dir", None, "Where the SavedModels go (default: --model_dir/saved_model)."
)
flags.DEFINE_boolean("overwrite", True, "Replace earlier exports of the same models.")
flags.DEFINE_integer(
    "check_images", 64, "Held-out images on which each export is checked.",
    lower_bound=1,
)


def serve(path, images):
    """Outputs of the SavedModel at `path`, loaded as TensorFlow serving would."""
    import tensorflow as tf

    signature = tf.saved_model.load(path).signatures["serving_default"]
    return {
        name: value.numpy()
        for name, value in signature(tf.constant(images, tf.uint8)).items()
    }


def keras_outputs(model, images):
    """The same named outputs, computed by the Keras model on this backend."""
    import keras
    import numpy as np

    x = images.astype("float32")
    if hasattr(model, "export_outputs"):
        outputs = model.export_outputs(x)
    elif hasattr(model, "projection_head"):
        outputs = dict(model(x, training=False))
        outputs = {
            "features": outputs["features"],
            "projection": outputs["projection"],
            **({"logits": outputs["probe_logits"]} if "probe_logits" in outputs else {}),
        }
    else:
        outputs = {"features": model(x, training=False)}
    return {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in outputs.items()}


def main(argv):
    del argv
    import keras
    import numpy as np

    import keras_simclr

    names = FLAGS.models or [
        name for name in MODELS
        if os.path.exists(os.path.join(FLAGS.model_dir, f"{name}.keras"))
    ]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise app.UsageError(f"--models must name some of {MODELS}. Received: {unknown}")
    missing = [
        name for name in names
        if not os.path.exists(os.path.join(FLAGS.model_dir, f"{name}.keras"))
    ]
    if not names or missing:
        raise app.UsageError(
            f"--model_dir={FLAGS.model_dir} holds no {missing or MODELS} .keras "
            "file: run examples/pretrain.py (and finetune.py, distill.py) first."
        )
    try:
        pretraining_flags = example_data.load_pretraining_flags(FLAGS.model_dir)
        _, _, test_images, _ = example_data.load_pretraining_dataset(pretraining_flags)
    except example_data.UsageError as error:
        raise app.UsageError(str(error))
    images = test_images[: FLAGS.check_images]
    export_dir = FLAGS.export_dir or os.path.join(FLAGS.model_dir, "saved_model")

    report = {"backend": keras.backend.backend(), "exports": {}}
    for name in names:
        model = keras.saving.load_model(
            os.path.join(FLAGS.model_dir, f"{name}.keras"), compile=False
        )
        try:
            path = keras_simclr.export_saved_model(
                model, os.path.join(export_dir, name), overwrite=FLAGS.overwrite
            )
        except ValueError as error:
            if "`path`" not in str(error):
                raise
            # The directory in the way is the flags' doing: say which flag.
            raise app.UsageError(f"--export_dir={export_dir}: {error}")
        served = serve(path, images)
        expected = keras_outputs(model, images)
        difference = max(
            float(np.max(np.abs(served[key] - expected[key]))) for key in expected
        )
        report["exports"][name] = {
            "path": path,
            "outputs": {key: list(value.shape[1:]) for key, value in served.items()},
            "max_abs_difference": difference,
        }
        print(
            f"{name}: {path}\n  outputs {sorted(served)}; largest difference from "
            f"the Keras model on {len(images)} images: {difference:.2e}"
        )
    with open(os.path.join(FLAGS.model_dir, "export.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    example_data.run(main)
