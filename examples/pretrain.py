r"""Pretrains a SimCLR encoder and reports its linear-probe accuracy.

The default dataset is scikit-learn's bundled handwritten digits (1,797 real
8x8 images, no download), so this runs offline in a few minutes on a laptop:

    python examples/pretrain.py --model_dir=runs/digits

Any folder of images in class subfolders works too (here the CIFAR-10 copy of
`../shared/data`, unpacked):

    python examples/pretrain.py --dataset=image_folder \
        --data_dir=~/.cache/keras_simclr/cifar10/train --image_size=32 \
        --epochs=100 --batch_size=256 --model_dir=runs/cifar10

The script writes to `--model_dir`:
    pretrainer.keras   the whole pretrainer (encoder, head, probe)
    encoder.keras      the encoder alone, for fine-tuning and export
    flags.json         the flags of the run
    results.json       losses, the linear-probe accuracies and the wall time
    backup/            the state of an unfinished run: run the same command
                       again to resume it where it stopped

Runs on every Keras backend: set KERAS_BACKEND=tensorflow, jax or torch.
"""

import json
import os
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_enum(
    "dataset", "digits", ["digits", "image_folder"],
    "digits: scikit-learn's bundled 8x8 handwritten digits (offline). "
    "image_folder: class subfolders of images under --data_dir.",
)
flags.DEFINE_string("data_dir", None, "Folder of class subfolders, for --dataset=image_folder.")
flags.DEFINE_integer(
    "image_size", None,
    "Side of the square views in pixels. Default: 16 for digits (upsampled "
    "from 8), 32 otherwise.",
)
flags.DEFINE_integer("max_images", None, "Use at most this many training images (for quick runs).")
flags.DEFINE_integer("resnet_depth", 18, "ResNet depth: 18, 34, 50, 101, 152 or 200.")
flags.DEFINE_integer("width_multiplier", 1, "ResNet width multiplier.")
flags.DEFINE_boolean(
    "cifar_stem", True,
    "3x3 stride-1 stem without max pooling, for small images (the paper's CIFAR-10 setting).",
)
flags.DEFINE_integer("projection_dim", 128, "Output width of the projection head.")
flags.DEFINE_integer("projection_layers", 2, "Dense layers in the projection head (v1: 2, v2: 3).")
flags.DEFINE_integer("batch_size", 128, "Images per step (each gives two views).")
flags.DEFINE_integer("epochs", 10, "Passes over the training images.")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "Optimizer.")
flags.DEFINE_float(
    "learning_rate", 0.3,
    "Peak learning rate per 256 images (scaled linearly with --batch_size), "
    "reached after a linear warm-up of one epoch and followed by cosine decay.",
)
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_float("weight_decay", 5e-4, "Decoupled weight decay (per step, times the learning rate).")
flags.DEFINE_float("temperature", 0.5, "NT-Xent temperature (the paper's CIFAR-10 value: 0.5).")
flags.DEFINE_float("color_jitter_strength", 0.5, "Colour distortion strength s (CIFAR: 0.5, ImageNet: 1.0).")
flags.DEFINE_float("crop_min_scale", 0.08, "Smallest crop area, as a fraction of the image.")
flags.DEFINE_float("blur_probability", 0.0, "Probability of Gaussian blur per view (ImageNet: 0.5).")
flags.DEFINE_boolean("mixed_precision", False, "Compute in bfloat16 (mixed_bfloat16 policy), loss in float32.")
flags.DEFINE_string("model_dir", "runs/pretrain", "Where checkpoints, flags and results are written.")
flags.DEFINE_integer("seed", 0, "Random seed of initialisation, augmentation and data order.")
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity (0, 1 or 2).")


def load_dataset(name, data_dir, image_size, max_images, seed):
    """Returns `(train_images, train_labels, test_images, test_labels)`, uint8 NHWC."""
    import numpy as np

    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = (digits.images * (255.0 / 16.0)).astype("float32")
        images = np.repeat(images[..., None], 3, axis=-1)
        labels = digits.target.astype("int32")
    else:
        if not data_dir:
            raise app.UsageError("--dataset=image_folder needs --data_dir.")
        import keras

        dataset = keras.utils.image_dataset_from_directory(
            os.path.expanduser(data_dir),
            image_size=(image_size, image_size),
            batch_size=None,
            shuffle=False,
        )
        images, labels = [], []
        for image, label in dataset.as_numpy_iterator():
            images.append(image)
            labels.append(label)
        images = np.stack(images).astype("float32")
        labels = np.asarray(labels, "int32")
    import keras

    if images.shape[1] != image_size:
        images = keras.ops.convert_to_numpy(
            keras.ops.image.resize(images, (image_size, image_size))
        )
    images = np.clip(np.round(images), 0, 255).astype("uint8")
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order], labels[order]
    num_test = len(images) // 5
    train_images, train_labels = images[num_test:], labels[num_test:]
    if max_images:
        train_images, train_labels = train_images[:max_images], train_labels[:max_images]
    return train_images, train_labels, images[:num_test], labels[:num_test]


def linear_probe_accuracy(encoder, train_images, train_labels, test_images, test_labels):
    """Top-1 of a logistic regression on frozen, standardised encoder features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train = encoder.predict(train_images, batch_size=256, verbose=0).astype("float64")
    test = encoder.predict(test_images, batch_size=256, verbose=0).astype("float64")
    scaler = StandardScaler().fit(train)
    classifier = LogisticRegression(max_iter=2000, C=1.0)
    classifier.fit(scaler.transform(train), train_labels)
    return float(classifier.score(scaler.transform(test), test_labels))


def main(argv):
    del argv
    import keras
    import numpy as np

    import keras_simclr

    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    image_size = FLAGS.image_size or (16 if FLAGS.dataset == "digits" else 32)
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    with open(os.path.join(FLAGS.model_dir, "flags.json"), "w") as f:
        json.dump(
            {name: FLAGS[name].value for name in FLAGS if name in _OWN_FLAGS},
            f, indent=2, sort_keys=True,
        )

    train_images, train_labels, test_images, test_labels = load_dataset(
        FLAGS.dataset, FLAGS.data_dir, image_size, FLAGS.max_images, FLAGS.seed
    )
    num_classes = int(max(train_labels.max(), test_labels.max()) + 1)
    batch_size = min(FLAGS.batch_size, len(train_images))
    # Drop the last partial batch: NT-Xent compares images within a batch.
    steps_per_epoch = len(train_images) // batch_size
    usable = steps_per_epoch * batch_size
    print(
        f"dataset={FLAGS.dataset}: {len(train_images)} training images "
        f"({usable} used per epoch), {len(test_images)} test images, "
        f"{image_size}x{image_size}, {num_classes} classes; "
        f"backend={keras.backend.backend()}"
    )

    def make_encoder():
        return keras_simclr.models.ResNet(
            depth=FLAGS.resnet_depth,
            width_multiplier=FLAGS.width_multiplier,
            cifar_stem=FLAGS.cifar_stem,
            input_shape=(image_size, image_size, 3),
        )

    random_encoder = make_encoder()
    encoder = make_encoder()
    encoder.set_weights(random_encoder.get_weights())
    augmentation = keras_simclr.layers.SimCLRAugmentation(
        image_size,
        preset="cifar",
        color_jitter_strength=FLAGS.color_jitter_strength,
        blur_probability=FLAGS.blur_probability,
        crop_scale=(FLAGS.crop_min_scale, 1.0),
        seed=FLAGS.seed,
    )
    pretrainer = keras_simclr.models.SimCLRPretrainer(
        encoder=encoder,
        augmentation=augmentation,
        projection_head=keras_simclr.layers.ProjectionHead(
            output_dim=FLAGS.projection_dim, num_layers=FLAGS.projection_layers
        ),
        temperature=FLAGS.temperature,
        num_classes=num_classes,
    )
    total_steps = steps_per_epoch * FLAGS.epochs
    peak = FLAGS.learning_rate * batch_size / 256
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(total_steps - steps_per_epoch, 1),
        warmup_target=peak,
        warmup_steps=min(steps_per_epoch, total_steps),
    )
    if FLAGS.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule, momentum=FLAGS.momentum, weight_decay=FLAGS.weight_decay
        )
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=FLAGS.weight_decay)
    pretrainer.compile(optimizer=optimizer)

    start = time.time()
    fit_result = pretrainer.fit(
        train_images[:usable],
        train_labels[:usable],
        batch_size=batch_size,
        epochs=FLAGS.epochs,
        verbose=FLAGS.verbose,
        callbacks=[
            keras.callbacks.BackupAndRestore(os.path.join(FLAGS.model_dir, "backup")),
        ],
    )
    history = fit_result.history
    wall_time = time.time() - start

    pretrainer.save(os.path.join(FLAGS.model_dir, "pretrainer.keras"))
    encoder.save(os.path.join(FLAGS.model_dir, "encoder.keras"))
    pretrained = linear_probe_accuracy(
        encoder, train_images, train_labels, test_images, test_labels
    )
    random = linear_probe_accuracy(
        random_encoder, train_images, train_labels, test_images, test_labels
    )
    results = {
        "backend": keras.backend.backend(),
        "dataset": FLAGS.dataset,
        "train_images": int(len(train_images)),
        "test_images": int(len(test_images)),
        "epochs": FLAGS.epochs,
        "steps": int(total_steps),
        # After a resume, only the epochs this invocation ran (1-based).
        "epochs_run": [epoch + 1 for epoch in fit_result.epoch],
        "pretraining_seconds": round(wall_time, 1),
        "final_contrastive_loss": float(history["contrastive_loss"][-1]),
        "final_contrastive_accuracy": float(history["contrastive_accuracy"][-1]),
        "linear_probe_accuracy": {"pretrained": pretrained, "random_init": random},
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
    }
    with open(os.path.join(FLAGS.model_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(
        "\nLinear-probe top-1 on the held-out images "
        f"({len(test_images)} images, logistic regression on frozen features):\n"
        f"  SimCLR-pretrained encoder : {pretrained:.4f}\n"
        f"  randomly initialised      : {random:.4f}\n"
        f"pretraining took {wall_time:.0f} s; results in {FLAGS.model_dir}"
    )


_OWN_FLAGS = [
    "dataset", "data_dir", "image_size", "max_images", "resnet_depth",
    "width_multiplier", "cifar_stem", "projection_dim", "projection_layers",
    "batch_size", "epochs", "optimizer", "learning_rate", "momentum",
    "weight_decay", "temperature", "color_jitter_strength", "crop_min_scale",
    "blur_probability", "mixed_precision", "model_dir", "seed",
]

if __name__ == "__main__":
    app.run(main)
