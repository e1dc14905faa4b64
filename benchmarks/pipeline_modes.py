r"""Images/s of the two ways to make 224 px views from an image folder in tf.data.

Both make two SimCLR views (`SimCLRAugmentation(224, preset="imagenet")`) of
each image inside the `tf.data` pipeline, from the same folder of JPEGs of
varied sizes:

- `resized` (what the image sources did before the full-image mode):
  decode, centre-crop to a square and resize to `--resize` (256), batch,
  then augment each batch: every random crop comes from the central square,
  reduced;
- `full_image` (the default for image folders and tfds above 64 px):
  decode at full size, make the two views of each image (random resized
  crop of the whole image, only the crop resized to 224), then batch.

Two reference rows time what both share: decoding alone, and decoding plus
the resize to `--resize`. The folder (`--images` random smooth JPEGs whose
sides are drawn from `--min_side` to `--max_side`) is written once under
`--work_dir`. Each backend runs in its own process (`KERAS_BACKEND`); the
pipelines run in parallel (`deterministic=False`) with no shuffle buffer.
Rates are images per second (each gives two views) over `--batches` batches
after `--warmup` batches, the median of `--repeats` runs; `CPU ms/image` is
the process CPU time (all threads) per image, less sensitive than wall time
to other processes on a shared machine.

    python benchmarks/pipeline_modes.py
    python benchmarks/pipeline_modes.py --backends=tensorflow,jax,torch --repeats=3

Prints a Markdown table and writes it with the raw numbers to `--output`.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODES = ("decode", "decode_resize", "resized", "full_image")
MODE_TEXT = {
    "decode": "decode only (full size)",
    "decode_resize": "decode + centre crop/resize",
    "resized": "resized, views per batch",
    "full_image": "full image, views per image",
}


def write_folder(folder, count, min_side, max_side, seed=0):
    """Writes `count` smooth random RGB JPEGs of varied sizes, once."""
    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return
    import numpy as np
    import tensorflow as tf

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        height, width = rng.integers(min_side, max_side + 1, size=2)
        # Coarse noise upsampled: photo-like smooth content, which JPEG
        # compresses (and decodes) as it does photographs, not as noise.
        coarse = rng.uniform(0, 255, (height // 16 + 2, width // 16 + 2, 3))
        image = tf.image.resize(coarse, (height, width), method="bicubic")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        data = tf.io.encode_jpeg(image, quality=90).numpy()
        with open(os.path.join(folder, f"{index:05d}.jpg"), "wb") as f:
            f.write(data)
    with open(done, "w") as f:
        f.write(str(count))


def make_pipeline(mode, folder, args):
    import tensorflow as tf

    from keras_simclr import data
    from keras_simclr.layers import SimCLRAugmentation

    if mode == "decode":
        # Images of many sizes do not batch: each keeps only its shape, a
        # data dependency that keeps its decode in the pipeline.
        images = data.from_image_folder(folder, labelled=False)
        return (
            images.map(lambda example: tf.shape(example["image"]))
            .repeat()
            .batch(args.batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
    if mode == "decode_resize":
        images = data.from_image_folder(folder, args.resize, labelled=False)
        return data.pretraining_dataset(
            images, args.batch_size, shuffle_buffer=0, repeat=True,
            with_labels=False,
        )
    augmentation = SimCLRAugmentation(args.image_size, preset="imagenet", seed=0)
    image_size = args.resize if mode == "resized" else None
    images = data.from_image_folder(folder, image_size, labelled=False)
    return data.pretraining_dataset(
        images,
        args.batch_size,
        augmentation=augmentation,
        augment_per_image=mode == "full_image",
        shuffle_buffer=0,
        repeat=True,
        with_labels=False,
        deterministic=False,
    )


def time_mode(mode, folder, args):
    """Images/s and CPU ms/image of `mode`, after its warm-up batches."""
    pipeline = iter(make_pipeline(mode, folder, args))
    for _ in range(args.warmup):
        next(pipeline)
    cpu_start, start = os.times(), time.perf_counter()
    for _ in range(args.batches):
        batch = next(pipeline)
    wall = time.perf_counter() - start
    cpu_end = os.times()
    cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    images = args.batches * args.batch_size
    shape = None
    if isinstance(batch, dict) and "view_a" in batch:
        shape = list(batch["view_a"].shape)
    del pipeline
    return {
        "images_per_second": images / wall,
        "cpu_ms_per_image": 1000.0 * cpu / images,
        "seconds": wall,
        "view_shape": shape,
    }


def child(args):
    import keras_simclr  # noqa: F401  (first, before TensorFlow loads)
    import keras

    folder = os.path.join(args.work_dir, "images")
    for mode in args.modes.split(","):
        for repeat in range(args.repeats):
            row = time_mode(mode, folder, args)
            row.update(backend=keras.backend.backend(), mode=mode, repeat=repeat)
            print("RESULT " + json.dumps(row), flush=True)


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="main", choices=["main", "child"])
    parser.add_argument("--backends", default="tensorflow", help="Comma-separated Keras backends.")
    parser.add_argument("--modes", default=",".join(MODES), help=f"Comma-separated, of {MODES}.")
    parser.add_argument("--image_size", type=int, default=224, help="View side, pixels.")
    parser.add_argument(
        "--resize", type=int, default=256, help="Side the resized mode resizes to first."
    )
    parser.add_argument("--images", type=int, default=256, help="JPEGs in the folder.")
    parser.add_argument("--min_side", type=int, default=300)
    parser.add_argument("--max_side", type=int, default=500)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2, help="Batches before timing.")
    parser.add_argument("--batches", type=int, default=8, help="Timed batches.")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work_dir", default="/tmp/keras_simclr_pipeline_modes")
    parser.add_argument(
        "--output", default=os.path.join(HERE, "results", "pipeline_modes.json")
    )
    args = parser.parse_args()
    if args.role == "child":
        return child(args)

    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    import _report

    folder = os.path.join(args.work_dir, "images")
    start = time.time()
    subprocess.run(
        [sys.executable, "-c",
         f"import sys; sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {HERE!r}); "
         "import keras_simclr, pipeline_modes as m; "
         f"m.write_folder({folder!r}, {args.images}, {args.min_side}, {args.max_side})"],
        check=True,
    )
    print(f"{args.images} JPEGs in {folder} ({time.time() - start:.0f} s)", flush=True)

    rows = []
    for backend in args.backends.split(","):
        command = [sys.executable, os.path.abspath(__file__), "--role=child"] + [
            f"--{name}={getattr(args, name)}"
            for name in ("modes", "image_size", "resize", "batch_size", "warmup",
                         "batches", "repeats", "work_dir")
        ]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        result = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True
        )
        lines = [
            line for line in result.stdout.splitlines() if line.startswith("RESULT ")
        ]
        if result.returncode:
            print(result.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"backend {backend} failed")
        for line in lines:
            row = json.loads(line[len("RESULT "):])
            rows.append(row)
            rate = row["images_per_second"]
            print(f"{backend:10s} {row['mode']:14s} {rate:8.1f} images/s", flush=True)

    machine = _report.machine_info(
        ["keras", "tensorflow", "jax", "jaxlib", "torch", "numpy"]
    )
    summary = []
    for backend in args.backends.split(","):
        for mode in args.modes.split(","):
            runs = [r for r in rows if r["backend"] == backend and r["mode"] == mode]
            summary.append({
                "backend": backend,
                "mode": mode,
                "images_per_second": median([r["images_per_second"] for r in runs]),
                "cpu_ms_per_image": median([r["cpu_ms_per_image"] for r in runs]),
                "views_per_image": 2 if mode in ("resized", "full_image") else 0,
                "runs": len(runs),
            })

    versions = ", ".join(
        f"{name} {version}" for name, version in machine["versions"].items() if version
    )
    command = "python benchmarks/pipeline_modes.py " + " ".join(sys.argv[1:])
    lines = [
        f"# Input pipeline modes at {args.image_size} px ({machine['date']})",
        "",
        f"{machine['cpu_model']}, {machine['cpus_available']} cores available; {versions}",
        "",
        f"`{command.strip()}`",
        "",
        f"{args.images} JPEGs of {args.min_side}-{args.max_side} px a side, "
        f"batch {args.batch_size}, `SimCLRAugmentation({args.image_size}, "
        f"preset=\"imagenet\")` twice per image, {args.batches} batches after "
        f"{args.warmup} warm-up, median of {args.repeats} run(s). `resized`: "
        f"centre crop/resize to {args.resize}, batch, views per batch; "
        "`full_image`: full decoded image, views per image, batch. Images/s "
        "counts source images (two views each); CPU ms/image is the process "
        "CPU time (all threads) per image.",
        "",
        "| backend | mode | images/s | CPU ms/image |",
        "| --- | --- | --- | --- |",
    ]
    for row in summary:
        lines.append(
            f"| {row['backend']} | {MODE_TEXT[row['mode']]} | "
            f"{row['images_per_second']:.1f} | {row['cpu_ms_per_image']:.1f} |"
        )
    print("\n".join(lines))
    _report.write_results(
        args.output,
        {"machine": machine, "arguments": vars(args), "summary": summary, "runs": rows},
        lines,
    )
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
