r"""SimCLR on CIFAR-10: kNN and linear-evaluation accuracy for a training budget.

Pretrains ResNet-18 with the CIFAR stem (2-layer projection head, NT-Xent,
LARS) on the 50,000 training images without their labels, for a budget given
in minutes of training or in epochs, then scores its frozen features on the
10,000 test images:

- weighted kNN (k=200, temperature 0.1, cosine similarity of L2-normalised
  features, neighbours among the 50,000 training images);
- linear evaluation (a linear classifier trained on the frozen features of
  the 50,000 labelled training images, `keras_simclr.evaluation`).

Next to it, with the same architecture and evaluations:

- `random`: the encoder as initialised, never trained;
- `supervised`: the encoder trained with the labels (cross-entropy, random
  flips and 4-pixel translations, SGD with Nesterov momentum) for the same
  budget;
- `lightly`: lightly's SimCLR (its `SimCLRTransform`, `SimCLRProjectionHead`,
  `NTXentLoss` and `LARS`) on torchvision's ResNet-18 with the same CIFAR
  stem, with the same hyper-parameters, schedule and budget, trained in a
  separate virtual environment by `_lightly_child.py` (see there; set it up
  with `python -m venv /tmp/lvenv && /tmp/lvenv/bin/pip install torch==2.14.1
  torchvision==0.29.1 lightly==1.6.0`, or name another interpreter with
  `--lightly_python`). It returns features, which are scored here exactly as
  keras_simclr's. Without that environment its row says `skipped`.

Both trained runs follow the same learning-rate schedule on the budget: a
linear warm-up over its first `--warmup_fraction`, then a cosine to 0, where
the progress is the fraction of the budget spent (training time for a
budget in minutes, steps for one in epochs). The learning rate is set every
`--steps_per_round` steps. Every `--eval_every_minutes` of training the kNN
accuracy on a fixed random subset (`--curve_train_images` neighbours,
`--curve_test_images` queries) is recorded; evaluation time does not count
against the budget. The curve is plotted against training minutes.

Data: the CIFAR-10 JPEG copy in `../shared/data/cifar10-jpeg.tar.gz`
(relative to the project root; `--archive`), unpacked once into
`--cache_dir`. Without it the script prints where it looked and exits. The
JPEG step makes the images slightly lossy, so accuracies are close to, not
identical with, those on the official files.

    KERAS_BACKEND=tensorflow python benchmarks/quality_cifar10.py --minutes=15
    KERAS_BACKEND=tensorflow python benchmarks/quality_cifar10.py --epochs=2 --runs=simclr
    KERAS_BACKEND=tensorflow python benchmarks/quality_cifar10.py --runs=simclr,lightly \
        --precisions=float32,mixed_bfloat16     # each run in both precisions

Writes `quality_cifar10.json` (command, seed, budget, wall times, backend,
curves and accuracies), `quality_cifar10.md` (the table) and
`quality_cifar10.png` (kNN accuracy against training time) to `--output_dir`.
"""

# First, before anything loads TensorFlow, which reads its oneDNN setting
# once: importing keras_simclr turns oneDNN on (keras_simclr.cpu_defaults).
from keras_simclr import cpu_defaults  # noqa: F401, E402

import argparse
import math
import os
import platform
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import _report  # noqa: E402
import numpy as np  # noqa: E402

CLASSES = 10
IMAGE_SIZE = 32
RUN_NAMES = {
    "simclr": "SimCLR (no labels)",
    "lightly": "lightly SimCLR (no labels)",
    "supervised": "supervised (all labels)",
    "random": "random init",
}
LIGHTLY_SETUP = (
    "python -m venv /tmp/lvenv && /tmp/lvenv/bin/pip install torch==2.14.1 "
    "torchvision==0.29.1 lightly==1.6.0"
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="Training budget per trained run, in minutes (default 15).")
    budget.add_argument("--epochs", type=float, help="Training budget per trained run, in passes over the training images.")
    parser.add_argument("--runs", default="simclr,supervised,random", help="Comma list of: simclr, lightly, supervised, random.")
    parser.add_argument("--lightly_python", default="/tmp/lvenv/bin/python", help="Interpreter of the lightly environment.")
    parser.add_argument("--lightly_workers", type=int, default=2, help="DataLoader workers of the lightly run.")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--simclr_learning_rate", type=float, default=1.0, help="LARS rate per 256 images (the paper's CIFAR-10 setting).")
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--supervised_learning_rate", type=float, default=0.1, help="SGD rate per 256 images.")
    parser.add_argument("--warmup_fraction", type=float, default=0.1)
    parser.add_argument("--steps_per_round", type=int, default=5, help="Steps between learning-rate updates and budget checks.")
    parser.add_argument("--eval_every_minutes", type=float, default=None, help="kNN curve interval (default: a sixth of the budget).")
    parser.add_argument("--curve_train_images", type=int, default=10000)
    parser.add_argument("--curve_test_images", type=int, default=2000)
    parser.add_argument("--eval_train_images", type=int, default=None, help="Labelled training images of the final kNN and linear evaluation (default all).")
    parser.add_argument("--eval_test_images", type=int, default=None, help="Test images of the final evaluation (default all 10,000).")
    parser.add_argument("--linear_epochs", type=int, default=100)
    parser.add_argument("--train_images", type=int, default=None, help="Use only this many training images (quick tries).")
    parser.add_argument(
        "--precisions", default="float32",
        help="Comma list of float32, mixed_bfloat16 and auto (keras_simclr.config.fast_precision()); every run of "
        "--runs trains once per precision. lightly's bfloat16 is PyTorch's fastest CPU setting (bf16 autocast, "
        "channels_last), as its users would run it.",
    )
    parser.add_argument(
        "--mixed_precision", type=int, default=None,
        help="Deprecated: 1 is --precisions=mixed_bfloat16, 0 is --precisions=float32.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--archive", default=os.path.join(ROOT, "..", "shared", "data", "cifar10-jpeg.tar.gz"))
    parser.add_argument("--cache_dir", default=os.path.expanduser("~/.cache/keras_simclr/cifar10"))
    parser.add_argument("--output_dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    if args.minutes is None and args.epochs is None:
        args.minutes = 15.0
    for name in ("minutes", "epochs"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name} must be positive. Received: {value}")
    runs = [r for r in args.runs.split(",") if r]
    unknown = sorted(set(runs) - set(RUN_NAMES))
    if unknown or not runs:
        parser.error(f"--runs takes {', '.join(RUN_NAMES)}. Received: {args.runs!r}")
    args.runs = runs
    if args.mixed_precision is not None:
        args.precisions = "mixed_bfloat16" if args.mixed_precision else "float32"
    precisions = [p for p in args.precisions.split(",") if p]
    unknown = sorted(set(precisions) - {"float32", "mixed_bfloat16", "auto"})
    if unknown or not precisions:
        parser.error(f"--precisions takes float32, mixed_bfloat16 and auto. Received: {args.precisions!r}")
    args.precisions = precisions
    if not 0 <= args.warmup_fraction < 1:
        parser.error(f"--warmup_fraction must be in [0, 1). Received: {args.warmup_fraction}")
    return args


# ---------------------------------------------------------------- data


def load_cifar10(archive, cache_dir):
    """`(train_images, train_labels, test_images, test_labels)` as uint8 and
    int64 arrays, decoded once from the JPEG folders and cached as .npz."""
    cached = os.path.join(cache_dir, "cifar10-jpeg-arrays.npz")
    if os.path.exists(cached):
        with np.load(cached) as arrays:
            return tuple(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    folder = os.path.join(cache_dir, "train")
    if not os.path.isdir(folder):
        if not os.path.exists(archive):
            return None
        print(f"Unpacking {archive} into {cache_dir}", flush=True)
        os.makedirs(cache_dir, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(cache_dir, filter="data")
    from keras_simclr import data

    arrays = []
    for split in ("train", "test"):
        dataset = data.from_image_folder(os.path.join(cache_dir, split), IMAGE_SIZE, labelled=True)
        images, labels = [], []
        for batch in dataset.batch(1000).as_numpy_iterator():
            images.append(batch["image"].astype("uint8"))
            labels.append(batch["label"].astype("int64"))
        arrays += [np.concatenate(images), np.concatenate(labels)]
    np.savez(cached, x_train=arrays[0], y_train=arrays[1], x_test=arrays[2], y_test=arrays[3])
    return tuple(arrays)


def random_subset(images, labels, count, seed):
    order = np.random.default_rng(seed).permutation(len(images))[:count]
    return images[order], labels[order]


# ---------------------------------------------------------------- budget


class Budget:
    """Progress through a budget of training seconds or of steps."""

    def __init__(self, seconds=None, steps=None):
        self.seconds, self.steps = seconds, steps

    def progress(self, train_seconds, steps_done):
        if self.seconds is not None:
            return train_seconds / self.seconds
        return steps_done / self.steps


def warmup_cosine(progress, peak, warmup_fraction):
    if progress < warmup_fraction:
        return peak * (progress + 1e-3) / warmup_fraction
    decay = (progress - warmup_fraction) / (1.0 - warmup_fraction)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(decay, 1.0)))


def make_budget_callback(keras, budget, peak, warmup_fraction, steps_per_round, evaluate, eval_every_seconds):
    """A callback that runs the budget: sets the learning rate at each round
    (`fit` epoch of `steps_per_round` steps), counts training time, records
    the kNN curve, and stops training when the budget is spent."""

    class BudgetCallback(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.train_seconds = 0.0
            self.steps_done = 0
            self.curve = []
            self.next_eval = 0.0

        def record(self):
            result = evaluate()
            self.curve.append(
                {"minutes": self.train_seconds / 60, "steps": self.steps_done, "knn_top1": result["top1"]}
            )
            print(
                f"  {self.train_seconds / 60:6.2f} min, {self.steps_done:5d} steps: "
                f"kNN top-1 {result['top1']:.4f} (subset)",
                flush=True,
            )
            self.next_eval += eval_every_seconds

        def on_train_begin(self, logs=None):
            self.record()

        def on_epoch_begin(self, epoch, logs=None):
            progress = budget.progress(self.train_seconds, self.steps_done)
            self.model.optimizer.learning_rate = warmup_cosine(progress, peak, warmup_fraction)
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.train_seconds += time.perf_counter() - self.start
            self.steps_done += steps_per_round
            done = budget.progress(self.train_seconds, self.steps_done) >= 1.0
            if done or self.train_seconds >= self.next_eval:
                self.record()
            if done:
                self.model.stop_training = True

    return BudgetCallback()


# ---------------------------------------------------------------- runs


def build_encoder(keras_simclr):
    return keras_simclr.models.ResNet(18, cifar_stem=True, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))


def train_simclr(args, keras, keras_simclr, train_images, budget, evaluate, eval_every_seconds):
    encoder = build_encoder(keras_simclr)
    pretrainer = keras_simclr.models.SimCLRPretrainer(
        encoder,
        augmentation=keras_simclr.layers.SimCLRAugmentation(IMAGE_SIZE, preset="cifar", seed=args.seed),
        projection_head=keras_simclr.layers.ProjectionHead(output_dim=128, num_layers=2),
        objective=keras_simclr.objectives.SimCLR(temperature=args.temperature),
    )
    pretrainer.compile(
        optimizer=keras_simclr.optimizers.LARS(args.simclr_learning_rate, momentum=0.9, weight_decay=1e-6)
    )
    dataset = keras_simclr.data.pretraining_dataset(
        keras_simclr.data.from_arrays(train_images),
        args.batch_size,
        with_labels=False,
        shuffle_buffer=len(train_images),
        repeat=True,
        seed=args.seed,
    )
    peak = keras_simclr.optimizers.scale_learning_rate(args.simclr_learning_rate, args.batch_size, "linear")
    callback = make_budget_callback(
        keras, budget, peak, args.warmup_fraction, args.steps_per_round, lambda: evaluate(encoder), eval_every_seconds
    )
    pretrainer.fit(
        dataset, epochs=10**6, steps_per_epoch=args.steps_per_round, callbacks=[callback], shuffle=False, verbose=0
    )
    return encoder, callback, {}


def train_supervised(args, keras, keras_simclr, train_images, train_labels, test, budget, evaluate, eval_every_seconds):
    encoder = build_encoder(keras_simclr)
    classifier = keras.Sequential(
        [
            keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
            keras.layers.RandomFlip("horizontal", seed=args.seed, dtype="float32"),
            keras.layers.RandomTranslation(
                4 / IMAGE_SIZE, 4 / IMAGE_SIZE, fill_mode="constant", seed=args.seed, dtype="float32"
            ),
            encoder,
            keras.layers.Dense(CLASSES, dtype="float32", name="logits"),
        ]
    )
    classifier.compile(
        optimizer=keras.optimizers.SGD(args.supervised_learning_rate, momentum=0.9, nesterov=True, weight_decay=5e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    import tensorflow as tf

    dataset = (
        tf.data.Dataset.from_tensor_slices((train_images, train_labels))
        .shuffle(len(train_images), seed=args.seed)
        .repeat()
        .batch(args.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    peak = args.supervised_learning_rate * args.batch_size / 256
    callback = make_budget_callback(
        keras, budget, peak, args.warmup_fraction, args.steps_per_round, lambda: evaluate(encoder), eval_every_seconds
    )
    classifier.fit(
        dataset, epochs=10**6, steps_per_epoch=args.steps_per_round, callbacks=[callback], shuffle=False, verbose=0
    )
    _, accuracy = classifier.evaluate(*test, batch_size=500, verbose=0)
    return encoder, callback, {"classifier_top1": float(accuracy)}


def score(keras, keras_simclr, encoder, train, test, linear_epochs):
    """kNN and linear-evaluation accuracy of the encoder's frozen features,
    computed once for both."""
    evaluation = keras_simclr.evaluation
    start = time.perf_counter()
    train_features, train_labels = evaluation.extract_features(encoder, train, batch_size=500)
    test_features, test_labels = evaluation.extract_features(encoder, test, batch_size=500)
    scores = score_features(
        keras, keras_simclr, (train_features, train_labels), (test_features, test_labels), linear_epochs
    )
    scores["evaluation_seconds"] = time.perf_counter() - start
    return scores


def score_features(keras, keras_simclr, train, test, linear_epochs):
    """kNN and linear evaluation of features given as `(features, labels)`
    pairs (through an identity layer)."""
    evaluation = keras_simclr.evaluation
    start = time.perf_counter()
    (train_features, train_labels), (test_features, test_labels) = train, test
    features = keras.layers.Identity()
    knn = evaluation.knn_accuracy(
        features, (train_features, train_labels), (test_features, test_labels), k=200, temperature=0.1
    )
    linear = evaluation.linear_evaluation(
        features,
        (train_features, train_labels),
        (test_features, test_labels),
        num_classes=CLASSES,
        epochs=linear_epochs,
    )
    return {
        "knn_top1": float(knn["top1"]),
        "knn_top5": float(knn["top5"]),
        "linear_top1": float(linear["top1"]),
        "linear_top5": float(linear["top5"]),
        "evaluation_seconds": time.perf_counter() - start,
    }


def train_lightly(args, keras, keras_simclr, x_train, curve_train, curve_test, eval_train, eval_test, budget, eval_every):
    """Runs `_lightly_child.py` under `--lightly_python` on the same images,
    budget and schedule, and scores the features it returns: the kNN curve
    on the same subsets and the final kNN and linear evaluation. Returns the
    run's result, or `{"skipped": reason}`."""
    import json
    import subprocess
    import tempfile

    if not os.path.exists(args.lightly_python):
        return {"skipped": f"no lightly environment at {args.lightly_python}; set it up with `{LIGHTLY_SETUP}`"}
    with tempfile.TemporaryDirectory() as folder:
        arrays = os.path.join(folder, "arrays.npz")
        np.savez(
            arrays, train_images=x_train, curve_train_images=curve_train[0], curve_test_images=curve_test[0],
            eval_train_images=eval_train[0], eval_test_images=eval_test[0],
        )
        job = {
            "arrays": arrays, "output": os.path.join(folder, "features.npz"), "seed": args.seed,
            "batch_size": args.batch_size, "learning_rate": args.simclr_learning_rate,
            "temperature": args.temperature, "warmup_fraction": args.warmup_fraction,
            "steps_per_round": args.steps_per_round, "workers": args.lightly_workers,
            "seconds": budget.seconds, "steps": budget.steps, "eval_every_seconds": eval_every,
            "mixed_precision": args.precision == "mixed_bfloat16",
        }
        child = subprocess.run(
            [args.lightly_python, os.path.join(HERE, "_lightly_child.py"), json.dumps(job)],
            capture_output=True, text=True,
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            raise RuntimeError(f"the lightly run failed:\n{(child.stderr or child.stdout)[-3000:]}")
        result = json.loads(lines[-1][len("RESULT "):])
        with np.load(job["output"]) as features:
            for index, point in enumerate(result["curve"]):
                knn = keras_simclr.evaluation.knn_accuracy(
                    keras.layers.Identity(),
                    (features[f"curve_{index}_train"], curve_train[1]),
                    (features[f"curve_{index}_test"], curve_test[1]),
                )
                point["knn_top1"] = float(knn["top1"])
                print(f"  {point['minutes']:6.2f} min, {point['steps']:5d} steps: "
                      f"kNN top-1 {point['knn_top1']:.4f} (subset)", flush=True)
            start = time.perf_counter()
            scores = score_features(
                keras, keras_simclr, (features["eval_train"], eval_train[1]),
                (features["eval_test"], eval_test[1]), args.linear_epochs,
            )
            scores["evaluation_seconds"] = time.perf_counter() - start
    return {**result, **scores}


# ---------------------------------------------------------------- report


def write_report(args, results, meta):
    names = RUN_NAMES
    budget = f"{args.minutes:g} min" if args.minutes is not None else f"{args.epochs:g} epochs"
    lines = [
        f"ResNet-18 (CIFAR stem), CIFAR-10 JPEG copy, budget {budget} per trained run, "
        f"batch {args.batch_size}, {meta['backend']} backend, {meta['precision']}, seed {args.seed}, "
        f"{meta['cpu']} ({meta['cores']} cores). Pretraining on {meta['train_images']} images; kNN "
        f"neighbours and linear classifier from {meta['eval_train_images']} labelled training images, "
        f"scored on {meta['eval_test_images']} test images.\n",
        "| encoder | training time | steps | epochs | kNN top-1 | kNN top-5 | linear top-1 | linear top-5 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, r in results.items():
        label = run_label(key, names)
        if "skipped" in r:
            lines.append(f"| {label} | skipped: {r['skipped']} | | | | | | |")
            continue
        lines.append(
            f"| {label} | {r['train_seconds'] / 60:.1f} min | {r['steps']} | {r['epochs']:.2f} | "
            f"{100 * r['knn_top1']:.1f}% | {100 * r['knn_top5']:.1f}% | "
            f"{100 * r['linear_top1']:.1f}% | {100 * r['linear_top5']:.1f}% |"
        )
    for key, r in results.items():
        if key.split("@")[0] == "supervised" and "classifier_top1" in r:
            lines.append(
                f"\nThe supervised network's own classifier ({run_label(key, names)}): "
                f"{100 * r['classifier_top1']:.1f}% top-1."
            )
    print("\n" + "\n".join(lines), flush=True)
    _report.write_results(os.path.join(args.output_dir, "quality_cifar10.json"), {**meta, "results": results}, lines)
    plot_curves(args, results, names, os.path.join(args.output_dir, "quality_cifar10.png"), meta)


def run_label(key, names):
    """The table's name of a result key, `run` or `run@precision`."""
    name, _, precision = key.partition("@")
    return f"{names[name]}, {precision}" if precision else names[name]


def plot_curves(args, results, names, path, meta):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    styles = {"simclr": "o-", "lightly": "^-", "supervised": "s-"}
    for key, r in results.items():
        name = key.split("@")[0]
        if name in styles and r.get("curve"):
            curve = r["curve"]
            ax.plot([p["minutes"] for p in curve], [100 * p["knn_top1"] for p in curve], styles[name],
                    label=run_label(key, names))
        elif name == "random" and "knn_top1_subset" in r:
            ax.axhline(100 * r["knn_top1_subset"], color="grey", ls="--", label=run_label(key, names))
    ax.set_xlabel("training time (minutes, evaluation excluded)")
    ax.set_ylabel("kNN top-1 (%)")
    ax.set_title(
        f"CIFAR-10, ResNet-18: kNN accuracy ({args.curve_train_images} neighbours, "
        f"{args.curve_test_images} test images)\n{meta['backend']}, {meta['cores']} CPU cores",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    arrays = load_cifar10(args.archive, args.cache_dir)
    if arrays is None:
        print(
            f"skipped: no CIFAR-10 copy at {os.path.abspath(args.archive)} and none unpacked in "
            f"{args.cache_dir}. Give its path with --archive (see ../shared/data/README.md).",
            flush=True,
        )
        return 0
    x_train, y_train, x_test, y_test = arrays
    if args.train_images:
        x_train, y_train = random_subset(x_train, y_train, args.train_images, args.seed)
    eval_train = random_subset(x_train, y_train, min(args.eval_train_images or len(x_train), len(x_train)), args.seed + 3)
    eval_test = random_subset(x_test, y_test, min(args.eval_test_images or len(x_test), len(x_test)), args.seed + 4)
    print(f"CIFAR-10: {len(x_train)} training and {len(x_test)} test images", flush=True)

    import keras

    import keras_simclr

    precisions = [keras_simclr.config.resolve_precision(p) for p in args.precisions]
    for precision in precisions:
        print(f"precision {precision}", flush=True)
    curve_train = random_subset(x_train, y_train, min(args.curve_train_images, len(x_train)), args.seed + 1)
    curve_test = random_subset(x_test, y_test, min(args.curve_test_images, len(x_test)), args.seed + 2)

    def evaluate_subset(encoder):
        return keras_simclr.evaluation.knn_accuracy(encoder, curve_train, curve_test, batch_size=500)

    steps_per_epoch = len(x_train) // args.batch_size
    if args.minutes is not None:
        budget = Budget(seconds=60 * args.minutes)
        eval_every = 60 * (args.eval_every_minutes or args.minutes / 6)
    else:
        steps = max(args.steps_per_round, round(args.epochs * steps_per_epoch))
        budget = Budget(steps=steps)
        eval_every = 60 * args.eval_every_minutes if args.eval_every_minutes else 0.0
    results = {}
    runs = [(name, precision) for precision in precisions for name in args.runs]
    for name, precision in runs:
        key = name if len(precisions) == 1 else f"{name}@{precision.policy}"
        print(f"== {name}, {precision.policy}", flush=True)
        keras.config.set_dtype_policy(precision.policy)
        args.precision = precision.policy
        keras.utils.set_random_seed(args.seed)
        run_start = time.perf_counter()
        extra = {}
        if name == "lightly":
            result = train_lightly(
                args, keras, keras_simclr, x_train, curve_train, curve_test, eval_train, eval_test, budget, eval_every
            )
            if "skipped" not in result:
                result["epochs"] = result["steps"] * args.batch_size / len(x_train)
                result["wall_seconds"] = time.perf_counter() - run_start
                print(f"   kNN top-1 {result['knn_top1']:.4f}, linear top-1 {result['linear_top1']:.4f} "
                      f"({result['wall_seconds'] / 60:.1f} min in all)", flush=True)
            else:
                print(f"   skipped: {result['skipped']}", flush=True)
            result["precision"] = precision.policy
            results[key] = result
            continue
        if name == "random":
            encoder = build_encoder(keras_simclr)
            callback = None
            extra["knn_top1_subset"] = evaluate_subset(encoder)["top1"]
        elif name == "simclr":
            encoder, callback, extra = train_simclr(
                args, keras, keras_simclr, x_train, budget, evaluate_subset, eval_every
            )
        else:
            encoder, callback, extra = train_supervised(
                args, keras, keras_simclr, x_train, y_train, eval_test, budget, evaluate_subset, eval_every
            )
        steps = callback.steps_done if callback else 0
        scores = score(keras, keras_simclr, encoder, eval_train, eval_test, args.linear_epochs)
        results[key] = {
            "precision": precision.policy,
            "train_seconds": callback.train_seconds if callback else 0.0,
            "steps": steps,
            "epochs": steps * args.batch_size / len(x_train),
            "curve": callback.curve if callback else [],
            "wall_seconds": time.perf_counter() - run_start,
            **scores,
            **extra,
        }
        print(
            f"   kNN top-1 {scores['knn_top1']:.4f}, linear top-1 {scores['linear_top1']:.4f} "
            f"({results[key]['wall_seconds'] / 60:.1f} min in all)",
            flush=True,
        )
        keras.backend.clear_session()

    meta = {
        "command": " ".join(["python"] + [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "backend": keras.backend.backend(),
        "precision": ", ".join(str(p) for p in precisions),
        "seed": args.seed,
        "budget": {"minutes": args.minutes, "epochs": args.epochs},
        "batch_size": args.batch_size,
        "train_images": len(x_train),
        "eval_train_images": len(eval_train[0]),
        "eval_test_images": len(eval_test[0]),
        "keras": keras.__version__,
        "python": platform.python_version(),
        "cpu": _report.cpu_model_and_flags()[0] or platform.processor() or "unknown CPU",
        "cores": os.cpu_count(),
        "wall_seconds": time.perf_counter() - started,
    }
    write_report(args, results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
