r"""Peak memory of training from an image folder, against the folder's size.

`keras_simclr.data.from_image_folder` streams a folder from disk: it lists the
files, and the `tf.data` pipeline reads, decodes and resizes each image when
it reaches it; `pretraining_dataset` then shuffles through a buffer, batches
and prefetches. Only the list of paths grows with the folder, so a folder
larger than the memory trains. This benchmark checks it:

1. writes folders of `--sizes` random 64x64 JPEGs (default 5,000 and
   50,000) under `--work_dir`, once (kept for later runs);
2. for each size, in a fresh process: `from_image_folder(shuffle=True)` at
   32x32, `pretraining_dataset` with a shuffle buffer of `--shuffle_buffer`
   images, `--steps` steps of `SimCLRPretrainer.fit` with a tiny encoder
   (two convolutions), then one full pass over the pipeline (every image of
   the folder read and decoded);
3. reports that process's peak resident set size, read by the process that
   started it with `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` (one
   measuring process per size, so one size's peak cannot hide another's).

With `--in_memory`, a second row per size decodes the whole folder into one
NumPy array first and trains on that (what `examples/` did before they
streamed), for comparison.

    python benchmarks/image_folder_memory.py
    python benchmarks/image_folder_memory.py --sizes=1000,10000 --in_memory

Prints a Markdown table and writes it with the raw numbers to `--output`.
"""

# The measuring process must stay small and TensorFlow-free: nothing here
# loads TensorFlow at import. The training child imports keras_simclr first
# (before TensorFlow loads, so that its oneDNN setting applies), as the
# other benchmarks do.
import argparse
import json
import os
import platform
import resource
import sys
import time

import _report  # noqa: E402  (beside this script)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IMAGE_SIZE = 32
SOURCE_SIZE = 64


def folder_path(work_dir, count):
    return os.path.join(work_dir, f"jpeg_{count}")


def write_folder(work_dir, count):
    """Writes `count` random 64x64 JPEGs (a flat folder); returns seconds."""
    folder = folder_path(work_dir, count)
    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return 0.0
    sys.path.insert(0, ROOT)
    import keras_simclr  # noqa: F401  (first, before TensorFlow loads)
    import tensorflow as tf

    start = time.time()
    os.makedirs(folder, exist_ok=True)

    def encode(index):
        pixels = tf.random.stateless_uniform(
            (SOURCE_SIZE, SOURCE_SIZE, 3), seed=tf.stack([index, 0]),
            maxval=256, dtype=tf.int32,
        )
        return index, tf.io.encode_jpeg(tf.cast(pixels, tf.uint8), quality=90)

    files = tf.data.Dataset.range(count).map(
        encode, num_parallel_calls=tf.data.AUTOTUNE
    )
    for index, data in files.as_numpy_iterator():
        with open(os.path.join(folder, f"{index:06d}.jpg"), "wb") as f:
            f.write(data)
    with open(done, "w") as f:
        f.write(str(count))
    return time.time() - start


def child(config):
    """Trains from the folder; prints a JSON line of what it did."""
    sys.path.insert(0, ROOT)
    import keras_simclr  # first, before TensorFlow loads

    import keras
    import numpy as np

    start = time.time()
    folder = keras_simclr.data.from_image_folder(
        config["folder"], IMAGE_SIZE, shuffle=True, seed=0
    )
    num_images = len(folder.file_paths)
    if config["mode"] == "in_memory":
        images = np.stack([e["image"] for e in folder.as_numpy_iterator()])
        folder = keras_simclr.data.from_arrays(images)
    batch_size = config["batch_size"]
    batches = keras_simclr.data.pretraining_dataset(
        folder, batch_size, shuffle_buffer=config["shuffle_buffer"],
        repeat=False, seed=0,
    )

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    pretrainer = keras_simclr.models.SimCLRPretrainer(
        keras.Model(inputs, x),
        augmentation=keras_simclr.layers.SimCLRAugmentation(
            IMAGE_SIZE, preset="cifar", seed=0
        ),
        projection_head=keras_simclr.layers.ProjectionHead(
            hidden_dim=64, output_dim=32
        ),
    )
    pretrainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    history = pretrainer.fit(
        batches.take(config["steps"]), epochs=1, verbose=0
    ).history
    train_seconds = time.time() - start

    # One full pass: every image of the folder read, decoded and batched.
    read = 0
    for batch in batches:
        read += int(batch.shape[0])
    print(
        json.dumps(
            {
                "images": num_images,
                "steps": config["steps"],
                "contrastive_loss": float(history["contrastive_loss"][-1]),
                "images_in_full_pass": read,
                "train_seconds": round(train_seconds, 1),
                "seconds": round(time.time() - start, 1),
                "self_peak_rss_mib": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                ),
            }
        )
    )


def measure(config):
    """Runs the child; prints its row with its peak RSS."""
    _report.measure_child(__file__, config)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="main", choices=["main", "measure", "child"])
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="5000,50000", help="Folder sizes, in images.")
    parser.add_argument("--steps", type=int, default=10, help="Training steps per size.")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument(
        "--shuffle_buffer", type=int, default=1000,
        help="Shuffle buffer of pretraining_dataset, in decoded images.",
    )
    parser.add_argument("--in_memory", action="store_true", help="Also the in-memory rows.")
    parser.add_argument(
        "--work_dir", default="/tmp/keras_simclr_image_folder_memory",
        help="Where the folders are written (and kept).",
    )
    parser.add_argument(
        "--output", default=os.path.join(HERE, "results", "image_folder_memory.json")
    )
    args = parser.parse_args()
    if args.role == "child":
        return child(json.loads(args.config))
    if args.role == "measure":
        return measure(json.loads(args.config))

    sizes = [int(size) for size in args.sizes.split(",")]
    written = {}
    for size in sizes:
        # Its own process, so that TensorFlow stays out of this one.
        output = _report.run_python(
            ["-c",
             f"import sys; sys.path.insert(0, {HERE!r}); import image_folder_memory as m; "
             f"print(m.write_folder({args.work_dir!r}, {size}))"],
            f"writing {size} images failed",
        )
        written[size] = round(float(_report.last_line(output)), 1)
        print(f"{size} JPEGs in {folder_path(args.work_dir, size)} "
              f"(written in {written[size]} s; 0 if kept from before)")

    rows = []
    modes = ["stream"] + (["in_memory"] if args.in_memory else [])
    for mode in modes:
        for size in sizes:
            config = {
                "mode": mode,
                "folder": folder_path(args.work_dir, size),
                "steps": args.steps,
                "batch_size": args.batch_size,
                "shuffle_buffer": args.shuffle_buffer,
            }
            row = {"mode": mode, **_report.measured_row(__file__, config)}
            rows.append(row)
            print(json.dumps(row))

    lines = [
        "| pipeline | images in the folder | peak RSS (MiB) | training steps | "
        "images read in the full pass | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['mode']} | {row['images']:,} | {row['peak_rss_mib']:,.0f} | "
            f"{row['steps']} | {row['images_in_full_pass']:,} | {row['seconds']} |"
        )
    print("\n".join(lines))
    results = {
        "command": "python benchmarks/image_folder_memory.py " + " ".join(sys.argv[1:]),
        "what": (
            "Peak RSS of a process that streams a flat folder of random 64x64 "
            "JPEGs through from_image_folder (32x32, shuffle=True) and "
            "pretraining_dataset (shuffle buffer, prefetch), trains a tiny "
            "SimCLRPretrainer for `steps` steps, then reads one full pass; "
            "rows of mode in_memory first decode the whole folder into one "
            "NumPy array. Measured with getrusage(RUSAGE_CHILDREN).ru_maxrss "
            "by the process that started it."
        ),
        "image_size": IMAGE_SIZE,
        "source_image_size": SOURCE_SIZE,
        "batch_size": args.batch_size,
        "shuffle_buffer": args.shuffle_buffer,
        "seconds_to_write_folders": written,
        "machine": {
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d"),
        },
        "rows": rows,
        "table": lines,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
