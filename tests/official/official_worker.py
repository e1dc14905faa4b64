"""Builds a model with the official SimCLR TF2 code and writes its files.

Run by tests/official/official_test.py in a subprocess: the official code is
Keras 2 code, which runs with the `tf-keras` package and
`TF_USE_LEGACY_KERAS=1` set before TensorFlow is imported, and reads its
architecture from the absl flags that `tf2/run.py` defines. For each
architecture of `--specs` (a JSON list), it builds `model.Model` with random
weights (batch-norm statistics and shifts made non-trivial), then writes to
`--out/<name>/`:

- `ckpt-1.*`: a `tf.train.Checkpoint(model=...)`, as `run.py` writes;
- `saved_model/`: the SavedModel that `run.py`'s `build_saved_model` exports;
- `outputs.npz`: for fixed images in [0, 1], the ResNet's features, every
  layer output of the projection head (`hiddens_list`, input included), the
  supervised head's logits, all in inference mode; and for images of
  several sizes, `data_util.preprocess_image(is_training=False)`.

    TF_USE_LEGACY_KERAS=1 python official_worker.py --oracle=DIR --out=DIR \\
        --specs='[{"name": "r50_sk", "resnet_depth": 50, ...}]'
"""

import argparse
import json
import os
import sys


def build(spec, out):
    import numpy as np
    import tensorflow as tf
    from absl import flags

    import data_util
    import model as model_lib
    import run

    flags.FLAGS.unparse_flags()
    flags.FLAGS(
        [
            "official",
            f"--resnet_depth={spec['resnet_depth']}",
            f"--width_multiplier={spec['width_multiplier']}",
            f"--sk_ratio={spec['sk_ratio']}",
            f"--image_size={spec['image_size']}",
            f"--num_proj_layers={spec['num_proj_layers']}",
            f"--proj_out_dim={spec.get('proj_out_dim', 128)}",
            f"--ft_proj_selector={spec.get('ft_proj_selector', 0)}",
            f"--train_mode={spec.get('train_mode', 'pretrain')}",
            "--lineareval_while_pretraining=true",
        ]
    )
    # The exported signature finds its tensors by graph names, which count
    # up from the second model of a session.
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(spec.get("seed", 0))
    model = model_lib.Model(spec["num_classes"])
    size = spec["image_size"]
    rng = np.random.default_rng(spec.get("seed", 0))
    images = rng.uniform(size=(4, size, size, 3)).astype("float32")
    model(tf.constant(images), training=False)
    # Random weights are not enough: fresh batch norms are the identity
    # (zero shift, unit statistics, and zero scale at the end of every
    # residual branch), which would hide a swapped statistic.
    for variable in model.variables:
        name = variable.name
        shape = variable.shape
        if "moving_variance" in name:
            variable.assign(rng.uniform(0.5, 1.5, size=shape))
        elif "moving_mean" in name or "beta" in name:
            variable.assign(rng.normal(0, 0.2, size=shape))
        elif "gamma" in name:
            variable.assign(rng.uniform(0.5, 1.5, size=shape))
        elif "head_supervised" in name or "supervised_head" in name:
            variable.assign(rng.normal(0, 0.1, size=shape))
    directory = os.path.join(out, spec["name"])
    os.makedirs(directory, exist_ok=True)
    tf.train.Checkpoint(model=model).write(os.path.join(directory, "ckpt-1"))
    if spec.get("checkpoint_only"):
        # For benchmarks/official_conversion.py: the file alone.
        return
    tf.saved_model.save(run.build_saved_model(model), os.path.join(directory, "saved_model"))

    features = model.resnet_model(tf.constant(images), training=False)
    hiddens = [features]
    for j, layer in enumerate(model._projection_head.linear_layers):
        hidden = layer(hiddens[-1], False)
        if j != len(model._projection_head.linear_layers) - 1:
            hidden = tf.nn.relu(hidden)
        hiddens.append(hidden)
    _, logits = model(tf.constant(images), training=False)
    arrays = {"images": images, "logits": logits.numpy()}
    for j, hidden in enumerate(hiddens):
        arrays[f"hidden_{j}"] = hidden.numpy()
    # The evaluation transform on images of several sizes and shapes, as
    # `data.py` applies it: no centre crop at 32 pixels or less (CIFAR),
    # whose images must then be of that size.
    test_crop = size > 32
    shapes = [(40, 40), (48, 64), (90, 50)] if test_crop else [(size, size)]
    for index, (height, width) in enumerate(shapes):
        raw = rng.integers(0, 256, size=(height, width, 3)).astype("uint8")
        arrays[f"raw_{index}"] = raw
        arrays[f"preprocessed_{index}"] = data_util.preprocess_image(
            tf.constant(raw), size, size, is_training=False, test_crop=test_crop
        ).numpy()
    np.savez(os.path.join(directory, "outputs.npz"), **arrays)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--oracle", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--specs", required=True)
    args = parser.parse_args()
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("set TF_USE_LEGACY_KERAS=1 (the official code is Keras 2 code)")
    sys.path.insert(0, os.path.join(args.oracle, "tf2"))
    for spec in json.loads(args.specs):
        build(spec, args.out)


if __name__ == "__main__":
    main()
