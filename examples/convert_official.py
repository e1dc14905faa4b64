r"""Converts an official SimCLR v1/v2 file to a `.keras` model for every backend.

Reads a TensorFlow 2 checkpoint or SavedModel published with the SimCLR
papers (gs://simclr-checkpoints-tf2/..., downloaded with gsutil) and writes
the keras_simclr model with its weights (`keras_simclr.models.load_official`):

    gsutil -m cp -r gs://simclr-checkpoints-tf2/simclrv2/pretrained/r50_1x_sk1 .
    python examples/convert_official.py --checkpoint=r50_1x_sk1/saved_model \
        --output=runs/official/pretrainer.keras

A pretrained file gives a `SimCLRPretrainer` (encoder, projection head, and
the file's linear-evaluation head as its probe); a fine-tuned one needs
`--head_layers` (the projection-head layers its classifier reads; SimCLR v2
fine-tunes from the first) and gives a `SimCLRClassifier`, as do supervised
and distilled files. The model carries the official evaluation transform
(centre crop 87.5%, bicubic, `--image_size`): give it raw images, uint8 or
float in [0, 255]. Next to the output, `convert.json` records the network
read from the file, its parameters, the conversion's wall time and the
process's peak memory. Nothing of the file's optimizer state is kept:
`compile()` and `fit()` the model to continue training.
"""

# First, before TensorFlow loads (it reads these settings once): no C++ log
# lines unless TF_CPP_MIN_LOG_LEVEL says otherwise (example_data imports
# neither).
import example_data

with example_data.quiet_logs():
    import keras_simclr  # noqa: E402

import json
import os
import resource
import time

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "checkpoint", None,
    "An official TF2 checkpoint prefix (.../ckpt-0), a directory holding a "
    "`checkpoint` file, or a SavedModel directory.",
    required=True,
)
flags.DEFINE_string(
    "output", None,
    "The .keras file to write (default: runs/official/pretrainer.keras, or "
    "classifier.keras for a fine-tuned, supervised or distilled file).",
)
flags.DEFINE_integer(
    "head_layers", None,
    "For a fine-tuned file: the projection-head layers its classifier reads "
    "(the official --ft_proj_selector; SimCLR v2: 1). Leave out for a "
    "pretrained file.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "image_size", None,
    "Output size of the evaluation transform (default 224; 32 for a "
    "CIFAR-stem network).",
    lower_bound=1,
)
flags.register_validator(
    "output",
    lambda path: path is None or path.endswith(".keras"),
    message="--output must be a path ending in .keras",
)


def main(argv):
    del argv
    start = time.perf_counter()
    checkpoint = keras_simclr.models.official.OfficialCheckpoint(FLAGS.checkpoint)
    architecture = checkpoint.architecture()
    model = keras_simclr.models.load_official(
        checkpoint, head_layers=FLAGS.head_layers, image_size=FLAGS.image_size
    )
    kind = (
        "pretrainer"
        if isinstance(model, keras_simclr.models.SimCLRPretrainer)
        else "classifier"
    )
    output = FLAGS.output or os.path.join("runs", "official", f"{kind}.keras")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    model.save(output)
    seconds = time.perf_counter() - start
    # Linux reports kibibytes.
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record = {
        "checkpoint": FLAGS.checkpoint,
        "output": output,
        "model": type(model).__name__,
        "architecture": architecture,
        "encoder_parameters": int(model.encoder.count_params()),
        "parameters": int(model.count_params()),
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak_mib),
    }
    with open(os.path.join(os.path.dirname(os.path.abspath(output)), "convert.json"), "w") as file:
        json.dump(record, file, indent=2)
    print(
        f"{type(model).__name__}: ResNet-{architecture['depth']} "
        f"{architecture['width_multiplier']}x"
        f"{' SK' if architecture['sk_ratio'] else ''}, "
        f"{record['encoder_parameters'] / 1e6:.1f}M encoder parameters, "
        f"saved in {output} ({seconds:.0f} s, peak {peak_mib:.0f} MiB)"
    )


if __name__ == "__main__":
    app.run(main)
