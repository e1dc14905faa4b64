r"""Pretrains a SimCLR encoder and reports its linear-probe accuracy.

The default dataset is scikit-learn's bundled handwritten digits (1,797 real
8x8 images, no download), so this runs offline in a few minutes on a laptop:

    python examples/pretrain.py --model_dir=runs/digits

Any folder of images in class subfolders works too (here the CIFAR-10 copy of
`../shared/data`, unpacked); its images are streamed from disk, so it may be
larger than the memory, and a fifth of them is held out for evaluation:

    python examples/pretrain.py --dataset=image_folder \
        --data_dir=~/.cache/keras_simclr/cifar10/train --image_size=32 \
        --epochs=100 --batch_size=256 --model_dir=runs/cifar10

A flat folder of unlabelled images pretrains on all of them; without labels
the kNN monitor and the linear-probe evaluation are skipped:

    python examples/pretrain.py --dataset=image_folder --data_dir=photos/ \
        --image_size=64 --model_dir=runs/photos

Above 64 px, the random crops of an image folder or a tfds dataset come from
each whole decoded image, made per image in tf.data (--crop_from):

    python examples/pretrain.py --dataset=image_folder --data_dir=photos/ \
        --image_size=224 --nocifar_stem --model_dir=runs/photos_224

A prepared TensorFlow Datasets dataset (add --download to fetch it once):

    python examples/pretrain.py --dataset=tfds --tfds_name=cifar10 \
        --image_size=32 --epochs=100 --batch_size=256 --model_dir=runs/cifar10

The script writes to `--model_dir`:
    pretrainer.keras   the whole pretrainer (encoder, head, probe)
    encoder.keras      the encoder alone, for fine-tuning and export
    flags.json         the flags of the run
    results.json       losses, kNN and linear-probe accuracies, the wall time
    history.csv        the metrics of every epoch (kNN accuracy included)
    views.png          training images beside two augmented views of each
    curves.png         loss, contrastive and kNN accuracy per epoch
    tensorboard/       with --tensorboard
    backup/            the state of an unfinished run: run the same command
                       again to resume it where it stopped

A finished run directory is not trained again: pass --overwrite to start a new
run there, which first deletes the results of the old one (and those of
finetune.py, distill.py and export.py). An interrupted run resumes from its
backup with or without --overwrite.

Runs on every Keras backend: set KERAS_BACKEND=tensorflow, jax or torch.

Several devices: --strategy=mirrored (TensorFlow: the local GPUs),
multi_worker (TensorFlow, one process per host, cluster in TF_CONFIG), tpu,
data_parallel (JAX; across several processes with --coordinator_address,
--num_processes and --process_id) or torch_ddp (PyTorch, one process per
device, started by torchrun). --batch_size is the global batch; every view's
negatives are all the other views of it, and batch norm uses its statistics.
To try it on a CPU, split it into logical devices:

    KERAS_BACKEND=tensorflow python examples/pretrain.py --strategy=mirrored \
        --cpu_devices=2 --model_dir=runs/digits_mirrored

or start processes (process 0 writes the run directory):

    KERAS_BACKEND=torch torchrun --nproc_per_node=2 examples/pretrain.py \
        --strategy=torch_ddp --model_dir=runs/digits_ddp
    # JAX: one command per process, i = 0 and 1
    KERAS_BACKEND=jax python examples/pretrain.py --strategy=data_parallel \
        --coordinator_address=127.0.0.1:1234 --num_processes=2 --process_id=i \
        --model_dir=runs/digits_jax2
"""

# First, before TensorFlow loads (it reads these settings once) and before
# JAX starts: no C++ log lines unless TF_CPP_MIN_LOG_LEVEL says otherwise
# (example_data imports neither); importing keras_simclr turns oneDNN on,
# and XNNPACK speeds up XLA's CPU convolutions (keras_simclr.cpu_defaults).
import example_data

with example_data.quiet_logs():
    from keras_simclr import cpu_defaults  # noqa: E402

cpu_defaults.enable_fast_xla_cpu()

import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_enum("dataset", "digits", example_data.DATASETS, example_data.DATASET_HELP)
flags.DEFINE_string(
    "data_dir", None,
    "--dataset=image_folder: the folder of images, in class subfolders "
    "(labelled) or flat (unlabelled). --dataset=tfds: where the tfds data are "
    "prepared (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).",
)
flags.DEFINE_string("tfds_name", None, "TensorFlow Datasets name for --dataset=tfds, e.g. cifar10.")
flags.DEFINE_boolean("download", False, "--dataset=tfds: download and prepare the data if absent.")
flags.DEFINE_integer(
    "image_size", None,
    "Side of the square views in pixels. Default: 16 for digits (upsampled "
    "from 8), 32 otherwise.",
)
flags.DEFINE_enum("crop_from", "auto", example_data.CROP_MODES, example_data.CROP_FROM_HELP)
flags.DEFINE_integer("max_images", None, "Use at most this many training images (for quick runs).")
flags.DEFINE_integer("resnet_depth", 18, "ResNet depth: 18, 34, 50, 101, 152 or 200.")
flags.DEFINE_float(
    "width_multiplier", 1,
    "ResNet width multiplier (SimCLR v2: 1 to 3; fractions such as 0.25 for "
    "quick CPU runs, channels rounded to a multiple of 8).",
)
flags.DEFINE_float(
    "sk_ratio", 0.0,
    "Selective kernels in the ResNet (SimCLR v2: 0.0625); 0 for none.",
    lower_bound=0.0,
)
flags.DEFINE_boolean(
    "cifar_stem", True,
    "3x3 stride-1 stem without max pooling, for small images (the paper's CIFAR-10 setting).",
)
flags.DEFINE_integer("projection_dim", 128, "Output width of the projection head.")
flags.DEFINE_integer("projection_layers", 2, "Dense layers in the projection head (v1: 2, v2: 3).")
flags.DEFINE_integer("batch_size", 128, "Images per step (each gives two views).")
flags.DEFINE_integer("epochs", 10, "Passes over the training images.")
flags.DEFINE_enum(
    "optimizer", "lars", ["lars", "sgd", "adam"],
    "lars: LARS with momentum, batch norm and biases excluded from weight decay "
    "and adaptation (the paper's). sgd: SGD with momentum. adam: AdamW.",
)
flags.DEFINE_float(
    "learning_rate", 0.3,
    "Base learning rate, scaled by --learning_rate_scaling: the peak rate, "
    "reached after --warmup_epochs of linear warm-up and followed by cosine decay to 0.",
)
flags.DEFINE_enum(
    "learning_rate_scaling", "linear", ["linear", "sqrt"],
    "linear: peak = learning_rate * batch_size / 256; sqrt: peak = learning_rate * "
    "sqrt(batch_size) (the paper suggests 0.075 with sqrt for small batches).",
)
flags.DEFINE_float(
    "warmup_epochs", None,
    "Epochs of linear learning-rate warm-up. Default: a tenth of --epochs (the "
    "paper: 10 of 100).",
    lower_bound=0.0,
)
flags.DEFINE_float("momentum", 0.9, "Momentum of LARS and SGD.")
flags.DEFINE_float(
    "weight_decay", 1e-6,
    "Weight decay (the paper: 1e-6): added to the gradient for lars, decoupled "
    "(times the learning rate) for sgd and adam.",
    lower_bound=0.0,
)
flags.DEFINE_enum(
    "strategy", "one_device",
    ["one_device", "mirrored", "multi_worker", "tpu", "data_parallel", "torch_ddp"],
    "How to spread the batch over devices. mirrored: tf.distribute.MirroredStrategy "
    "over the local GPUs (or --cpu_devices); multi_worker: "
    "tf.distribute.MultiWorkerMirroredStrategy, hosts given by TF_CONFIG; tpu: "
    "tf.distribute.TPUStrategy (--tpu); these three need KERAS_BACKEND=tensorflow. "
    "data_parallel: keras.distribution.DataParallel over all devices, KERAS_BACKEND=jax "
    "(of every process with --num_processes). torch_ddp: one torch.distributed process "
    "per device (gloo on CPUs, NCCL on GPUs), KERAS_BACKEND=torch, started by torchrun. "
    "--batch_size is the global batch.",
)
flags.DEFINE_string(
    "coordinator_address", None,
    "--strategy=data_parallel across processes: host:port of process 0, the same "
    "in every process.",
)
flags.DEFINE_integer(
    "num_processes", 1,
    "--strategy=data_parallel: the number of JAX processes that train together.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "process_id", 0,
    "--strategy=data_parallel across processes: this process's index, "
    "0 to --num_processes - 1.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "cpu_devices", 0,
    "Split the CPU into this many logical devices, to try --strategy=mirrored or "
    "data_parallel on a machine without accelerators (0: leave the CPU as it is).",
    lower_bound=0,
)
flags.DEFINE_string("tpu", "", "TPU name or grpc:// address for --strategy=tpu ('' for a local TPU VM).")
flags.DEFINE_boolean(
    "global_bn", True,
    "Batch-norm statistics over the global batch when several replicas train "
    "(the paper's); --noglobal_bn keeps them per replica (TensorFlow strategies only).",
)
flags.DEFINE_integer(
    "gradient_chunk_size", None,
    "Encode at most this many images (twice as many views) at a time and "
    "train on the whole --batch_size's objective with its exact gradient "
    "(gradient caching: about one more forward pass of compute, the "
    "activation memory of one chunk). For a batch that does not fit in "
    "memory (on each device, with several). Default: the whole batch at once.",
)
flags.DEFINE_enum(
    "objective", "simclr",
    ["simclr", "supcon", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "unigrad"],
    "What to minimise on the same views, encoder and head (see docs/objectives.md). "
    "supcon uses the labels.",
)
flags.DEFINE_string(
    "objective_config", None,
    'JSON dict of the objective\'s own arguments, e.g. \'{"lambda_offdiag": 0.005}\' '
    "for barlow_twins or '{\"lambda_\": 100, \"rho\": 0.99}' for unigrad.",
)
flags.DEFINE_float(
    "temperature", 0.5,
    "Softmax temperature of simclr, supcon and moco (the paper's CIFAR-10 value: 0.5).",
)
flags.DEFINE_float(
    "target_momentum", 0.996,
    "Base momentum of the target network of moco, byol, unigrad and --memory_queue; it rises to 1 "
    "along BYOL's cosine schedule over the run.",
)
flags.DEFINE_integer(
    "queue_size", 65536,
    "Keys in the queue of negatives of moco and of --memory_queue (at least "
    "twice --batch_size).",
    lower_bound=1,
)
flags.DEFINE_boolean(
    "memory_queue", False,
    "SimCLR v2's memory: with --objective=simclr, a momentum encoder fills a "
    "queue of --queue_size extra negatives for NT-Xent.",
)
flags.DEFINE_integer(
    "prediction_hidden_dim", None,
    "Hidden width of the prediction head of byol and simsiam (default: 4096 for "
    "byol, 512 for simsiam, as their papers).",
    lower_bound=1,
)
flags.DEFINE_float("color_jitter_strength", 0.5, "Colour distortion strength s (CIFAR: 0.5, ImageNet: 1.0).")
flags.DEFINE_float("crop_min_scale", 0.08, "Smallest crop area, as a fraction of the image.")
flags.DEFINE_float("blur_probability", 0.0, "Probability of Gaussian blur per view (ImageNet: 0.5).")
example_data.define_precision_flag()
flags.DEFINE_boolean(
    "mixed_precision", None,
    "Deprecated, kept for one release: --mixed_precision is "
    "--precision=mixed_bfloat16, --nomixed_precision --precision=float32.",
)
flags.DEFINE_string("model_dir", "runs/pretrain", "Where checkpoints, flags and results are written.")
flags.DEFINE_integer(
    "checkpoint_steps", 50,
    "Back up the training state (weights, optimizer, step) to --model_dir/backup "
    "every this many steps. A killed run resumes from its last backup when rerun "
    "with the same --model_dir, and still takes steps_per_epoch * epochs steps in all.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "knn_every", 1,
    "Weighted kNN accuracy (k=200, temperature 0.1) of the encoder on the held-out "
    "images every this many epochs, logged as knn_accuracy; 0 turns it off.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "knn_train_images", 10000,
    "Labelled training images the kNN monitor searches (of the --eval_images).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "eval_images", 10000,
    "Images of each split that the evaluations use, decoded into memory: the "
    "final linear probe fits on at most this many training images and is "
    "scored, as the kNN monitor is, on at most this many held-out images.",
    lower_bound=1,
)
flags.DEFINE_boolean(
    "overwrite", False,
    "Start a new run in a --model_dir that holds a finished one, deleting its "
    "results first. Without it such a directory is refused. An interrupted run "
    "(--model_dir/backup) resumes either way.",
)
flags.DEFINE_boolean("tensorboard", False, "Write TensorBoard logs to --model_dir/tensorboard.")
flags.DEFINE_boolean(
    "plots", True,
    "Draw views.png (images and two augmented views) and curves.png (loss, "
    "contrastive and kNN accuracy per epoch) in --model_dir; needs matplotlib.",
)
flags.DEFINE_integer("seed", 0, "Random seed of initialisation, augmentation and data order.")
flags.DEFINE_integer("verbose", 2, example_data.VERBOSE_HELP)

# Checked as the flags are parsed: one line naming the flag and its value,
# before anything loads.
for _name, _condition, _requirement in (
    ("image_size", lambda n: n >= 1, "a positive number of pixels"),
    ("max_images", lambda n: n >= 1, "a positive number of images (or left out for all)"),
    ("resnet_depth", lambda n: n in (18, 34, 50, 101, 152, 200),
     "one of 18, 34, 50, 101, 152 and 200"),
    ("width_multiplier", lambda x: x > 0, "positive"),
    ("projection_dim", lambda n: n >= 1, "a positive width"),
    ("projection_layers", lambda n: n >= 1, "a positive number of layers"),
    ("batch_size", lambda n: n >= 1, "a positive number of images"),
    ("gradient_chunk_size", lambda n: n >= 1, "a positive number of images (or left out for the whole batch)"),
    ("epochs", lambda n: n >= 1, "a positive number of epochs"),
    ("learning_rate", lambda x: x > 0, "positive"),
    ("momentum", lambda x: 0 <= x < 1, "in [0, 1)"),
    ("temperature", lambda x: x > 0, "positive"),
    ("target_momentum", lambda x: 0 <= x <= 1, "in [0, 1]"),
    ("color_jitter_strength", lambda x: x >= 0, "at least 0"),
    ("crop_min_scale", lambda x: 0 < x <= 1, "in (0, 1], a fraction of the image area"),
    ("blur_probability", lambda x: 0 <= x <= 1, "a probability in [0, 1]"),
    ("seed", lambda n: n >= 0, "at least 0"),
    ("verbose", lambda n: n in (0, 1, 2, 3), "0, 1, 2 or 3"),
):
    example_data.check_flag(_name, _condition, _requirement)


def precision_from_flags():
    """The `keras_simclr.config.Precision` of --precision, or of the
    deprecated --mixed_precision."""
    import keras_simclr

    if FLAGS.mixed_precision is None:
        return keras_simclr.config.resolve_precision(FLAGS.precision)
    if FLAGS["precision"].present:
        raise app.UsageError(
            "--mixed_precision is the deprecated form of --precision; give "
            f"--precision only. Received: --precision={FLAGS.precision} and "
            f"--{'' if FLAGS.mixed_precision else 'no'}mixed_precision"
        )
    policy = "mixed_bfloat16" if FLAGS.mixed_precision else "float32"
    print(
        "--mixed_precision is deprecated and will be removed in a future "
        f"release: use --precision={policy}."
    )
    return keras_simclr.config.Precision(policy, "chosen by --mixed_precision")


def make_strategy(name, cpu_devices, tpu):
    """Sets up --strategy before any model exists; returns a tf.distribute
    strategy, or None when Keras's default placement (or the JAX
    distribution set here) applies."""
    import keras

    backend = keras.backend.backend()
    tensorflow_strategies = ("mirrored", "multi_worker", "tpu")
    if name in tensorflow_strategies and backend != "tensorflow":
        raise app.UsageError(
            f"--strategy={name} is a tf.distribute strategy: run with "
            f"KERAS_BACKEND=tensorflow (received backend {backend}), or use "
            "--strategy=data_parallel with KERAS_BACKEND=jax."
        )
    if name == "data_parallel" and backend != "jax":
        raise app.UsageError(
            "--strategy=data_parallel uses the JAX distribution API: run with "
            f"KERAS_BACKEND=jax (received backend {backend}). On TensorFlow use "
            "--strategy=mirrored, on PyTorch --strategy=torch_ddp."
        )
    if FLAGS.num_processes > 1 and name != "data_parallel":
        raise app.UsageError(
            "--num_processes starts JAX processes for --strategy=data_parallel "
            f"(torch_ddp takes its processes from torchrun). Received: "
            f"--num_processes={FLAGS.num_processes} with --strategy={name}"
        )
    if name == "torch_ddp":
        return start_torch_processes(backend)
    if backend == "tensorflow" and cpu_devices:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices
        )
    if name == "one_device":
        return None
    if name == "data_parallel":
        if FLAGS.num_processes > 1:
            if not FLAGS.coordinator_address:
                raise app.UsageError(
                    "--num_processes > 1 needs --coordinator_address (host:port "
                    f"of process 0). Received: --num_processes={FLAGS.num_processes}"
                )
            if FLAGS.process_id >= FLAGS.num_processes:
                raise app.UsageError(
                    "--process_id must be below --num_processes="
                    f"{FLAGS.num_processes}. Received: --process_id={FLAGS.process_id}"
                )
            import keras_simclr

            keras_simclr.distribute.initialize_jax_processes(
                FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
            )
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return None
    import tensorflow as tf

    if name == "mirrored":
        devices = None
        if not tf.config.list_logical_devices("GPU"):
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def start_torch_processes(backend):
    """Joins the torch.distributed group that torchrun describes (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT): NCCL with one GPU per process,
    gloo on CPUs; a torchrun restart joins a fresh group."""
    if backend != "torch":
        raise app.UsageError(
            "--strategy=torch_ddp runs torch.distributed processes: run with "
            f"KERAS_BACKEND=torch (received backend {backend})."
        )
    import keras_simclr

    try:
        keras_simclr.distribute.initialize_torch_processes()
    except ValueError as error:
        raise app.UsageError(f"--strategy=torch_ddp: {error}")
    return None


def make_optimizer(name, schedule, momentum, weight_decay):
    import keras

    import keras_simclr

    if name == "lars":
        return keras_simclr.optimizers.LARS(
            schedule,
            momentum=momentum,
            weight_decay=weight_decay,
        )
    if name == "sgd":
        return keras.optimizers.SGD(
            schedule, momentum=momentum, weight_decay=weight_decay
        )
    return keras.optimizers.AdamW(schedule, weight_decay=weight_decay)


def encode(encoder, images, num_devices):
    """Features of `images`; batches split evenly over `num_devices` (a JAX
    data-parallel batch must), by repeating the last image as padding."""
    import numpy as np

    padding = -len(images) % num_devices
    padded = np.concatenate([images, images[-1:].repeat(padding, axis=0)])
    batch_size = 256 - 256 % num_devices
    features = encoder.predict(padded, batch_size=batch_size, verbose=0)
    return features[: len(images)].astype("float64")


def linear_probe_accuracy(
    encoder, train_images, train_labels, test_images, test_labels, num_devices=1
):
    """Top-1 of a logistic regression on frozen, standardised encoder features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train = encode(encoder, train_images, num_devices)
    test = encode(encoder, test_images, num_devices)
    scaler = StandardScaler().fit(train)
    classifier = LogisticRegression(max_iter=2000, C=1.0)
    classifier.fit(scaler.transform(train), train_labels)
    return float(classifier.score(scaler.transform(test), test_labels))


# What a run leaves in --model_dir, and what the later stages write there from
# it: a new run invalidates all of them (CSVLogger would append to an old
# history.csv).
RUN_OUTPUTS = (
    "pretrainer.keras", "encoder.keras", "results.json", "history.csv",
    "views.png", "curves.png", "tensorboard", "classifier.keras",
    "finetune.json", "student.keras", "distill.json", "saved_model", "export.json",
)
# A run is finished once its models are saved; the backup is gone by then.
FINISHED_RUN_OUTPUTS = (
    "pretrainer.keras", "encoder.keras", "results.json", "classifier.keras",
    "student.keras",
)


def resumes(model_dir):
    """Whether `model_dir` holds the backup of an interrupted run.

    As `keras.callbacks.BackupAndRestore` decides: it restores when the
    backup's weights (or, with `double_checkpoint`, their previous copy)
    exist, and deletes the backup when training ends.
    """
    weights = os.path.join(model_dir, "backup", "latest.weights.h5")
    return os.path.exists(weights) or os.path.exists(f"{weights}.bkp")


def validate_model_dir(values):
    """Refuses a --model_dir holding a finished run, unless --overwrite."""
    model_dir = values["model_dir"]
    if resumes(model_dir) or values["overwrite"]:
        return True
    finished = [
        name for name in FINISHED_RUN_OUTPUTS
        if os.path.exists(os.path.join(model_dir, name))
    ]
    if finished:
        raise flags.ValidationError(
            f"--model_dir={model_dir} holds a finished run ({', '.join(finished)}). "
            "Pass --overwrite to start a new run there (the old results are "
            "deleted first), or choose another --model_dir."
        )
    return True


def validate_data_flags(values):
    """Refuses a --data_dir that would be ignored or does not exist."""
    try:
        example_data.check_data_flags(
            values["dataset"], values["data_dir"], values["download"]
        )
    except example_data.UsageError as error:
        raise flags.ValidationError(str(error))
    return True


# Checked as the flags are parsed: a short usage error, before anything loads.
flags.register_multi_flags_validator(["model_dir", "overwrite"], validate_model_dir)
flags.register_multi_flags_validator(
    ["dataset", "data_dir", "download"], validate_data_flags
)


def clear_run_outputs(model_dir):
    """Deletes what an earlier run (and the stages after it) left in `model_dir`."""
    import shutil

    for name in RUN_OUTPUTS:
        path = os.path.join(model_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


def main(argv):
    del argv
    fit_verbose = example_data.hide_noisy_logs(FLAGS.verbose)
    resuming = resumes(FLAGS.model_dir)
    if FLAGS.cpu_devices:
        # Read by JAX when it is imported (with Keras, below).
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={FLAGS.cpu_devices}"
        )
    import contextlib

    import keras

    import keras_simclr
    from keras_simclr import objectives

    # Devices are set up before anything else touches them.
    strategy = make_strategy(FLAGS.strategy, FLAGS.cpu_devices, FLAGS.tpu)
    num_devices = keras_simclr.distribute.num_data_parallel_devices()
    if strategy is not None:
        num_devices = strategy.num_replicas_in_sync
    # PyTorch processes draw their own views (fit() gives every process
    # process 0's weights); under JAX the step is one program, and every
    # process must build the same variables.
    process_index = keras_simclr.distribute.process_index()
    chief = process_index == 0
    view_seed = FLAGS.seed + (process_index if FLAGS.strategy == "torch_ddp" else 0)
    keras.utils.set_random_seed(view_seed)
    if view_seed != FLAGS.seed:
        # tf.data shuffles mix TensorFlow's global seed into their order
        # (tfds's file order does): one for every process, so that they all
        # read the same global batches. keras_simclr.data's own shuffles
        # depend on their seed alone.
        import tensorflow as tf

        tf.random.set_seed(FLAGS.seed)
    precision = example_data.use_precision(precision_from_flags())
    image_size = FLAGS.image_size or example_data.default_image_size(FLAGS.dataset)

    def make_augmentation():
        return keras_simclr.layers.SimCLRAugmentation(
            image_size,
            preset="cifar",
            color_jitter_strength=FLAGS.color_jitter_strength,
            blur_probability=FLAGS.blur_probability,
            crop_scale=(FLAGS.crop_min_scale, 1.0),
            seed=view_seed,
        )

    try:
        crop_from = example_data.crop_mode(FLAGS.dataset, image_size, FLAGS.crop_from)
        # Full-image mode: the views are made in tf.data, per image, by a
        # layer of their own (made outside any strategy scope), whose
        # evaluation transform also frames the evaluation images.
        pipeline_augmentation = (
            make_augmentation() if crop_from == "full_image" else None
        )
        data = example_data.load_training_data(
            FLAGS.dataset, FLAGS.data_dir, image_size, FLAGS.max_images,
            FLAGS.seed, FLAGS.eval_images, tfds_name=FLAGS.tfds_name,
            download=FLAGS.download, evaluation_transform=pipeline_augmentation,
        )
    except example_data.UsageError as error:
        raise app.UsageError(str(error))
    num_classes = data.num_classes
    labelled = num_classes is not None
    if not labelled and FLAGS.objective == "supcon":
        raise app.UsageError(
            f"--objective=supcon learns from labels, and --data_dir={FLAGS.data_dir} "
            "has no class subfolders. Received: --objective=supcon"
        )
    batch_size = min(FLAGS.batch_size, data.num_train)
    if batch_size < FLAGS.batch_size:
        print(
            f"--batch_size={FLAGS.batch_size} is more than the {data.num_train} "
            f"training images: each step takes all {batch_size}, so each view "
            f"has {2 * batch_size - 2} negatives instead of {2 * FLAGS.batch_size - 2}."
        )
    if batch_size % num_devices:
        raise app.UsageError(
            f"--batch_size is the global batch and must split evenly over the "
            f"{num_devices} devices of --strategy={FLAGS.strategy}. Received: "
            f"--batch_size={batch_size}"
        )
    # Drop the last partial batch: NT-Xent compares images within a batch.
    steps_per_epoch = data.num_train // batch_size
    usable = steps_per_epoch * batch_size
    held_out = (
        f"{data.num_held_out} test images, {num_classes} classes"
        if labelled else "no labels"
    )
    print(
        f"dataset={FLAGS.dataset}: {data.num_train} training images "
        f"({usable} used per epoch), {held_out}, {image_size}x{image_size} "
        f"views, crops from the {'full' if crop_from == 'full_image' else 'resized'} "
        "images; "
        f"backend={keras.backend.backend()}, strategy={FLAGS.strategy} over "
        f"{num_devices} device(s)"
    )
    if not labelled:
        print(
            f"--data_dir={FLAGS.data_dir} has no class subfolders, so no labels: "
            "the kNN monitor and the linear-probe evaluation are skipped."
        )
    total_steps = steps_per_epoch * FLAGS.epochs
    warmup_epochs = (
        FLAGS.epochs / 10 if FLAGS.warmup_epochs is None else FLAGS.warmup_epochs
    )
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    if warmup_steps > total_steps:
        raise app.UsageError(
            f"--warmup_epochs must not exceed --epochs={FLAGS.epochs}. "
            f"Received: --warmup_epochs={FLAGS.warmup_epochs}"
        )

    def make_encoder():
        return keras_simclr.models.ResNet(
            depth=FLAGS.resnet_depth,
            width_multiplier=FLAGS.width_multiplier,
            sk_ratio=FLAGS.sk_ratio,
            cifar_stem=FLAGS.cifar_stem,
            input_shape=(image_size, image_size, 3),
        )

    make_objective = objective_from_flags(total_steps)
    if (FLAGS.objective == "moco" or FLAGS.memory_queue) and (
        FLAGS.queue_size < 2 * batch_size
    ):
        raise app.UsageError(
            "--queue_size must hold the keys of both views of a batch, at least "
            f"2 * --batch_size = {2 * batch_size}. Received: --queue_size={FLAGS.queue_size}"
        )
    # With several processes, process 0 alone writes the run directory.
    if chief:
        if not resuming:
            # Training starts from step 0: nothing an earlier run left stays valid.
            clear_run_outputs(FLAGS.model_dir)
        os.makedirs(FLAGS.model_dir, exist_ok=True)
        with open(os.path.join(FLAGS.model_dir, "flags.json"), "w") as f:
            json.dump(
                {name: FLAGS[name].value for name in FLAGS if name in _OWN_FLAGS},
                f, indent=2, sort_keys=True,
            )
    keras_simclr.distribute.barrier()
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    # Variables, models and optimizer are made under the strategy.
    with scope:
        random_encoder = make_encoder()
        encoder = make_encoder()
        encoder.set_weights(random_encoder.get_weights())
        augmentation = make_augmentation()
        pretrainer = keras_simclr.models.SimCLRPretrainer(
            encoder=encoder,
            augmentation=augmentation,
            projection_head=keras_simclr.layers.ProjectionHead(
                output_dim=FLAGS.projection_dim, num_layers=FLAGS.projection_layers
            ),
            objective=make_objective(),
            num_classes=num_classes,
            global_bn=FLAGS.global_bn,
            gradient_chunk_size=FLAGS.gradient_chunk_size,
        )
        peak = keras_simclr.optimizers.scale_learning_rate(
            FLAGS.learning_rate, batch_size, FLAGS.learning_rate_scaling
        )
        schedule = keras_simclr.optimizers.WarmupCosineDecay(
            peak, total_steps=total_steps, warmup_steps=warmup_steps
        )
        optimizer = make_optimizer(
            FLAGS.optimizer, schedule, FLAGS.momentum, FLAGS.weight_decay
        )
        pretrainer.compile(optimizer=optimizer)

    # A backup taken mid-epoch restores weights, optimizer (with its step
    # count) and the augmentation's random state, but Keras reruns the
    # interrupted epoch from its first batch: StopAtStep ends the resumed run
    # at the planned number of steps. Two backups are kept because a kill
    # during a write leaves the newest unreadable.
    stop_at_step = keras_simclr.callbacks.StopAtStep(total_steps)
    callbacks = []
    if FLAGS.knn_every and labelled:
        eval_train_images, eval_train_labels = data.eval_train
        # First: the loggers below read the kNN accuracy it adds to the logs.
        callbacks.append(
            keras_simclr.callbacks.KNNMonitor(
                (
                    eval_train_images[: FLAGS.knn_train_images],
                    eval_train_labels[: FLAGS.knn_train_images],
                ),
                data.eval_test,
                encoder=encoder,
                every_n_epochs=FLAGS.knn_every,
            )
        )
    callbacks += [
        keras_simclr.callbacks.BackupAndRestore(
            os.path.join(FLAGS.model_dir, "backup"),
            save_freq=FLAGS.checkpoint_steps,
            double_checkpoint=True,
        ),
        stop_at_step,
    ]
    if chief:
        callbacks.append(
            keras.callbacks.CSVLogger(
                os.path.join(FLAGS.model_dir, "history.csv"), append=True
            )
        )
    if FLAGS.tensorboard and chief:
        callbacks.append(
            keras.callbacks.TensorBoard(os.path.join(FLAGS.model_dir, "tensorboard"))
        )
    if FLAGS.plots and chief:
        # It copies the augmentation: new variables, this process's own.
        with keras_simclr.distribute.process_local_variables():
            keras_simclr.visualization.augmentation_preview(
                augmentation, data.preview,
                os.path.join(FLAGS.model_dir, "views.png"), seed=FLAGS.seed,
            )
    if isinstance(data.train, tuple):
        train_images, train_labels = data.train
        inputs = {
            "x": train_images[:usable],
            "y": train_labels[:usable],
            "batch_size": batch_size,
        }
    else:
        # Streamed from disk, a new file order each pass; repeated, so that
        # skipped unreadable files cannot shorten an epoch. In the full-image
        # mode the views are made per image, in parallel (in no fixed order,
        # so they are not repeatable from the seed).
        full_image = pipeline_augmentation is not None
        inputs = {
            "x": keras_simclr.data.pretraining_dataset(
                data.train, batch_size, augmentation=pipeline_augmentation,
                with_labels=labelled, shuffle_buffer=data.shuffle_buffer,
                repeat=True, seed=FLAGS.seed, augment_per_image=full_image,
                deterministic=not full_image,
            ),
            "steps_per_epoch": steps_per_epoch,
            "shuffle": False,
        }
    start = time.time()
    fit_result = pretrainer.fit(
        **inputs,
        epochs=FLAGS.epochs,
        verbose=fit_verbose if chief else 0,
        callbacks=callbacks,
    )
    history = fit_result.history
    wall_time = time.time() - start
    if not chief:
        # The logs were the global ones in every process; process 0 saves
        # and evaluates.
        finish_processes()
        return

    # Under a JAX distribution across processes, making variables is a
    # collective step: process 0 saves and evaluates with its own.
    with keras_simclr.distribute.process_local_variables():
        pretrainer.save(os.path.join(FLAGS.model_dir, "pretrainer.keras"))
        encoder.save(os.path.join(FLAGS.model_dir, "encoder.keras"))
        linear_probe = None
        if labelled:
            linear_probe = {
                name: linear_probe_accuracy(
                    model, *data.eval_train, *data.eval_test, num_devices
                )
                for name, model in (
                    ("pretrained", encoder), ("random_init", random_encoder)
                )
            }
        num_test_images = len(data.eval_test[0]) if labelled else 0
        loss_name = objectives.OBJECTIVES[FLAGS.objective].loss_metric()
        results = {
            "backend": keras.backend.backend(),
            "strategy": FLAGS.strategy,
            "devices": int(num_devices),
            "processes": int(keras_simclr.distribute.process_count()),
            "dataset": FLAGS.dataset,
            "train_images": int(data.num_train),
            # Held-out images the evaluations scored, of "held_out_images".
            "test_images": int(num_test_images),
            "held_out_images": int(data.num_held_out),
            "eval_train_images": int(len(data.eval_train[0])) if labelled else 0,
            "epochs": FLAGS.epochs,
            "steps": int(total_steps),
            # Steps taken in all, restored ones included; equals "steps".
            "optimizer_steps": int(keras.ops.convert_to_numpy(optimizer.iterations)),
            # Step count restored from the backup (0 for a fresh run).
            "resumed_from_step": stop_at_step.initial_step,
            # After a resume, only the epochs this invocation ran (1-based).
            "epochs_run": [epoch + 1 for epoch in fit_result.epoch],
            "pretraining_seconds": round(wall_time, 1),
            "objective": FLAGS.objective,
            "precision": precision.policy,
            "precision_reason": precision.reason,
            "final_objective_loss": float(history[loss_name][-1]),
            "linear_probe_accuracy": linear_probe,
            "history": {k: [float(v) for v in vs] for k, vs in history.items()},
        }
        if FLAGS.objective == "simclr":
            results["final_contrastive_loss"] = results["final_objective_loss"]
            results["final_contrastive_accuracy"] = float(
                history["contrastive_accuracy"][-1]
            )
        if "knn_accuracy" in history:
            results["final_knn_accuracy"] = float(history["knn_accuracy"][-1])
        if not labelled:
            results["evaluation_skipped"] = "no labels: --data_dir has no class subfolders"
        with open(os.path.join(FLAGS.model_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
        if FLAGS.plots:
            keras_simclr.visualization.plot_history(
                history, os.path.join(FLAGS.model_dir, "curves.png"),
                metrics=("loss", loss_name, "contrastive_accuracy", "knn_accuracy"),
            )
        if labelled:
            print(
                "\nLinear-probe top-1 on the held-out images "
                f"({num_test_images} images, logistic regression on frozen features):\n"
                f"  SimCLR-pretrained encoder : {linear_probe['pretrained']:.4f}\n"
                f"  randomly initialised      : {linear_probe['random_init']:.4f}"
            )
    print(f"pretraining took {wall_time:.0f} s; results in {FLAGS.model_dir}")
    finish_processes()


def finish_processes():
    """Leaves the torch.distributed group, if this run joined one."""
    if FLAGS.strategy == "torch_ddp":
        import torch.distributed as dist

        dist.destroy_process_group()


# Flags that only some objectives use, and the objective's argument of each.
OBJECTIVE_FLAGS = {
    "temperature": "temperature",
    "target_momentum": "momentum",
    "queue_size": "queue_size",
    "memory_queue": "memory_queue",
    "prediction_hidden_dim": "prediction_head",
}


def objective_from_flags(total_steps):
    """Checks --objective, --objective_config and the flags of
    `OBJECTIVE_FLAGS`; returns a function that makes the objective (called
    under the strategy's scope, where its variables belong).

    A flag the objective does not take is refused if given, as the library
    refuses the argument, and left out at its default; momentum methods
    raise their momentum to 1 over the run.
    """
    import keras_simclr
    from keras_simclr import objectives

    try:
        arguments = json.loads(FLAGS.objective_config or "{}")
    except json.JSONDecodeError as error:
        arguments = error
    if not isinstance(arguments, dict):
        raise app.UsageError(
            f"--objective_config must be a JSON dict ({arguments}). "
            f"Received: --objective_config={FLAGS.objective_config}"
        )
    if FLAGS.memory_queue and FLAGS.objective != "simclr":
        raise app.UsageError(
            "--memory_queue adds negatives to --objective=simclr (moco has its "
            f"own queue). Received: --objective={FLAGS.objective}"
        )
    cls = objectives.OBJECTIVES[FLAGS.objective]
    conditions = getattr(cls, "conditional_arguments", {})

    def uses(argument):
        condition = conditions.get(argument)
        return argument in objectives.arguments(cls) and (
            condition is None or FLAGS[condition].value
        )

    for flag, argument in OBJECTIVE_FLAGS.items():
        if FLAGS[flag].present and not uses(argument):
            raise app.UsageError(
                f"--{flag} is not used by --objective={FLAGS.objective}"
                f"{'' if FLAGS.memory_queue else ' (without --memory_queue)'}; it "
                f"applies to {objectives.users_of(argument)}. "
                f"Received: --{flag}={FLAGS[flag].value}"
            )
        if FLAGS[flag].present and argument in arguments:
            raise app.UsageError(
                f"--{flag} sets `{argument}`, which --objective_config sets "
                f"too; give it once. Received: --{flag}={FLAGS[flag].value}"
            )
        if uses(argument) and FLAGS[flag].value is not None:
            arguments.setdefault(argument, FLAGS[flag].value)
    if uses("momentum_schedule_steps"):
        arguments.setdefault("momentum_schedule_steps", total_steps)
    objectives.check_arguments(cls, arguments)

    def make_objective():
        made = dict(arguments)
        if "prediction_head" in made:
            made["prediction_head"] = keras_simclr.layers.PredictionHead(
                hidden_dim=made["prediction_head"], name="prediction_head"
            )
        return cls(**made)

    return make_objective


_OWN_FLAGS = [
    "dataset", "data_dir", "tfds_name", "download", "image_size", "crop_from", "max_images",
    "resnet_depth",
    "width_multiplier", "sk_ratio", "cifar_stem", "projection_dim", "projection_layers",
    "batch_size", "gradient_chunk_size", "epochs", "optimizer", "learning_rate",
    "learning_rate_scaling", "warmup_epochs", "momentum", "weight_decay",
    "strategy", "cpu_devices", "tpu", "coordinator_address", "num_processes",
    "process_id", "global_bn", "objective",
    "objective_config", "target_momentum", "queue_size", "memory_queue", "prediction_hidden_dim",
    "temperature", "color_jitter_strength", "crop_min_scale",
    "blur_probability", "precision", "mixed_precision", "model_dir", "checkpoint_steps", "knn_every",
    "knn_train_images", "eval_images", "tensorboard", "plots", "seed",
]

if __name__ == "__main__":
    example_data.run(main)
