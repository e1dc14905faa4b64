r"""Speed of keras_simclr next to the PyTorch references, as ratios.

Three sections, each configuration timed in its own process (a Keras backend
is fixed at import), side by side in one run:

1. `augmentation`: source images per second (each gives two views) of
   `SimCLRAugmentation` on uint8 images, for the `cifar` preset (32x32
   sources, 32 px views, batch 256) and the `imagenet` preset (256x256
   sources, 224 px views, batch 64):
   - compiled, on each Keras backend: a `keras.Model` whose `call` makes the
     two views with `SimCLRPretrainer.make_views`, run by `predict_on_batch`
     and compiled as `fit` compiles a step (TensorFlow: `tf.function`
     without XLA, the views one XLA cluster inside it, as in the
     pretrainer's step; JAX: `jax.jit`; torch: eager); median of
     `--repeats` batches after one warm-up batch;
   - in `tf.data` (TensorFlow): `keras_simclr.data.pretraining_dataset` with
     the augmentation layer, views made in a parallel `map`; median of
     `--repeats` epochs after a warm-up epoch;
   - the reference: torchvision's SimCLR transforms (the paper's settings)
     applied twice in the `__getitem__` of a dataset of PIL images, read by
     a `DataLoader` with `--workers` worker processes; epochs timed as for
     `tf.data`.
   The ratio is images/s over the torchvision DataLoader's images/s.
2. `step`: one pretraining step (2-layer projection head, NT-Xent, SGD with
   momentum, 32x32 images) of each network of `--networks` (the small CNN and
   ResNet-18 with the CIFAR stem of `pretrain_step.py`), in images per
   second, from what a bare Keras user gets to what keras_simclr sets up (the
   rows of `STEP_ROWS`): a bare Keras step with Keras's own layers and
   TensorFlow's oneDNN default, then oneDNN off and on, then the library's
   fast layers (`ChannelsLastConv2D`, `FusedBatchNormalization`), then
   `SimCLRPretrainer.fit` fed views and on raw images (augmentation inside the
   step), on TensorFlow and torch, and the library on JAX; all in float32,
   and on a CPU with bfloat16 instructions the library rows again in
   `mixed_bfloat16`. Next to them the plain PyTorch loop of `pretrain_step.py`
   (float32, and bf16 autocast + channels_last) fed ready-made views, so
   without any augmentation. The ratios are images/s over the PyTorch loop's
   in each of its two configurations.
3. `scaling`: on `--scaling_backend`, the step fed ready-made views (so
   without augmentation) against the batch size (32x32 images) and the image
   size (batch `--image_size_batch`, same network, CIFAR stem included),
   next to NT-Xent alone (forward and gradient with respect to the two
   (N, 128) float32 embeddings, compiled as the step) at the same batch, and
   its share of the step. Plots both against the batch size.

The step timings reuse `child_keras` and `child_torch` of `pretrain_step.py`.
Images are synthetic random uint8; the timings do not depend on the pixels.
Keras and TensorFlow use every core; the torchvision reference uses
`--workers` worker processes of one thread each.

    python benchmarks/speed.py                             # everything
    python benchmarks/speed.py --sections=augmentation
    python benchmarks/speed.py --sections=step,scaling --scaling_backend=jax

torchvision runs in a separate virtual environment (with its own PyTorch),
never beside keras_simclr:

    python -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1

Pass another interpreter with `--torchvision_python`; without one the
torchvision rows say `skipped` and the others are measured.

`--precision=auto` (the default) picks `mixed_bfloat16` on a CPU with
bfloat16 instructions (`avx512_bf16`, `amx_bf16`; the JSON lists those
found) and `float32` on one without, where bfloat16 is emulated and far
slower than float32. For the same reason the PyTorch loop's bf16 autocast
configuration runs only on a CPU with those instructions.

Reading the ratios: above 1.0, keras_simclr is faster than the reference
(1.5: it processes 1.5 times as many images per second); below 1.0, slower.

Prints Markdown tables and writes them with the raw numbers to `--output`
(JSON), to the same path with `.md`, and the scaling plot to
`speed_scaling.png` in the same folder.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import _report  # noqa: E402
import pretrain_step  # noqa: E402

SECTIONS = ("augmentation", "step", "scaling")
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
# How `fit` compiles a step on a CPU: TensorFlow without XLA, JAX with it,
# torch eagerly.
JIT_COMPILE = {"tensorflow": False, "jax": True, "torch": False}
COMPILED_NAMES = {
    "tensorflow": "tf.function, views in XLA",
    "jax": "jax.jit",
    "torch": "eager",
}
PRESETS = {
    "cifar": {"view_size": 32, "source_size": 32, "color_strength": 0.5, "blur": False},
    "imagenet": {"view_size": 224, "source_size": 256, "color_strength": 1.0, "blur": True},
}
# Without these, bfloat16 arithmetic on a CPU is emulated (and slow).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
TORCHVISION_SETUP = (
    "python -m venv /tmp/tvenv && "
    "/tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1"
)


# === Child processes ===


def source_images(count, size):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)


def set_precision(keras, precision):
    if precision == "mixed_bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")


def new_augmentation(config):
    sys.path.insert(0, ROOT)
    import keras
    from keras_simclr.layers import SimCLRAugmentation

    set_precision(keras, config["precision"])
    preset = PRESETS[config["preset"]]
    return SimCLRAugmentation(preset["view_size"], preset=config["preset"], seed=0)


def child_augmentation_compiled(config):
    import keras

    augmentation = new_augmentation(config)

    from keras_simclr.models import SimCLRPretrainer

    # The views as the pretrainer's step makes them (on TensorFlow, one XLA
    # cluster inside a step that is not compiled as a whole).
    pretrainer = SimCLRPretrainer(
        encoder=keras.layers.GlobalAveragePooling2D(), augmentation=augmentation
    )

    class TwoViews(keras.Model):
        def call(self, images):
            return pretrainer.make_views(images)

    model = TwoViews()
    model.compile(jit_compile=JIT_COMPILE[keras.backend.backend()])
    images = source_images(config["batch_size"], PRESETS[config["preset"]]["source_size"])
    model.predict_on_batch(images)
    times = []
    for _ in range(config["repeats"]):
        start = time.perf_counter()
        model.predict_on_batch(images)
        times.append(time.perf_counter() - start)
    return {"times": times, "images": len(images)}


def epoch_times(batches, repeats, first_view):
    """Seconds per pass over `batches` of two views, after a warm-up pass, and
    the number of source images in a pass; `views[first_view]` is a view."""
    times = []
    for _ in range(1 + repeats):
        count = 0
        start = time.perf_counter()
        for views in batches:
            count += len(views[first_view])
        times.append(time.perf_counter() - start)
    return {"times": times[1:], "images": count}


def child_augmentation_tfdata(config):
    import keras_simclr

    augmentation = new_augmentation(config)
    images = source_images(config["images"], PRESETS[config["preset"]]["source_size"])
    batches = keras_simclr.data.pretraining_dataset(
        keras_simclr.data.from_arrays(images),
        config["batch_size"],
        augmentation=augmentation,
        with_labels=False,
    )
    return epoch_times(batches, config["repeats"], "view_a")


class TwoViewDataset:
    """A map-style dataset of PIL images giving two transformed views each."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        return self.transform(image), self.transform(image)


def simclr_transform(preset):
    """torchvision's SimCLR augmentation with the paper's settings."""
    from torchvision import transforms

    size, s = preset["view_size"], preset["color_strength"]
    steps = [
        transforms.RandomResizedCrop(size, scale=(0.08, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.RandomApply(
            [transforms.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8
        ),
        transforms.RandomGrayscale(p=0.2),
    ]
    if preset["blur"]:
        kernel = int(0.1 * size) // 2 * 2 + 1
        steps.append(
            transforms.RandomApply(
                [transforms.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5
            )
        )
    steps.append(transforms.ToTensor())
    return transforms.Compose(steps)


def child_torchvision(config):
    import torch
    from PIL import Image

    torch.manual_seed(0)
    preset = PRESETS[config["preset"]]
    images = [Image.fromarray(a) for a in source_images(config["images"], preset["source_size"])]
    workers = config["workers"]
    loader = torch.utils.data.DataLoader(
        TwoViewDataset(images, simclr_transform(preset)),
        batch_size=config["batch_size"],
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    return epoch_times(loader, config["repeats"], 0)


def loss_and_gradients():
    """NT-Xent and its gradient with respect to both embeddings, compiled
    on the current backend as `fit` compiles a step."""
    import keras
    from keras_simclr.losses import nt_xent

    def loss(z_a, z_b):
        return nt_xent(z_a, z_b, temperature=0.5)

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=False)
        def step(z_a, z_b):
            with tf.GradientTape() as tape:
                tape.watch([z_a, z_b])
                value = loss(z_a, z_b)
            return value, tape.gradient(value, [z_a, z_b])

        return step
    if backend == "jax":
        import jax

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    import torch

    def step(z_a, z_b):
        z_a, z_b = z_a.requires_grad_(), z_b.requires_grad_()
        value = loss(z_a, z_b)
        return value, torch.autograd.grad(value, (z_a, z_b))

    return step


def child_nt_xent(config):
    import keras
    import numpy as np

    sys.path.insert(0, ROOT)
    step = loss_and_gradients()
    rng = np.random.default_rng(0)
    results = {}
    for batch in config["batch_sizes"]:
        z_a, z_b = (
            keras.ops.convert_to_tensor(rng.standard_normal((batch, 128), dtype="float32"))
            for _ in range(2)
        )
        times = []
        for _ in range(1 + config["repeats"]):
            start = time.perf_counter()
            keras.tree.map_structure(keras.ops.convert_to_numpy, step(z_a, z_b))
            times.append(time.perf_counter() - start)
        results[str(batch)] = times[1:]
    return {"times": results}


def child_step(config):
    if config["backend"] == "pytorch":
        return {"times": pretrain_step.child_torch(config)}
    return {"times": pretrain_step.child_keras(config)}


CHILDREN = {
    "augmentation_compiled": child_augmentation_compiled,
    "augmentation_tfdata": child_augmentation_tfdata,
    "torchvision": child_torchvision,
    "nt_xent": child_nt_xent,
    "step": child_step,
}


# === Parent process ===


def run_child(config, python=sys.executable):
    env = pretrain_step.child_environment(config)
    result = subprocess.run(
        [python, os.path.abspath(__file__), "--child", json.dumps(config)],
        env=env, capture_output=True, text=True,
    )
    lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        error = (result.stderr or result.stdout)[-2000:]
        print(f"FAILED: {json.dumps(config)}\n{error}", flush=True)
        return dict(config, error=error)
    return dict(config, **json.loads(lines[-1][len("RESULT "):]))


def median(values):
    return sorted(values)[len(values) // 2]


def fmt(value, spec, missing="failed"):
    return missing if value is None else format(value, spec)


def csv(text, kind=str):
    return [kind(part) for part in text.split(",") if part]


def torchvision_status(python):
    """`(versions, None)` if torchvision imports under `python`, else
    `(None, reason)`."""
    if not os.path.exists(python):
        return None, f"no interpreter at {python}"
    code = "import torch, torchvision; print(torch.__version__, torchvision.__version__)"
    result = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        return None, f"torchvision does not import under {python}"
    torch_version, torchvision_version = result.stdout.split()[-2:]
    return {"torch": torch_version, "torchvision": torchvision_version}, None


def machine_info(torchvision_versions):
    machine = _report.machine_info(("keras", "tensorflow", "jax", "torch"))
    flags = _report.cpu_model_and_flags()[1]
    machine["cpu_bf16_instructions"] = [f for f in BF16_FLAGS if f in flags]
    for package, version in (torchvision_versions or {}).items():
        machine["versions"][f"{package} (torchvision venv)"] = version
    return machine


# --- augmentation ---


def augmentation_rows(args, skip_reason):
    rows = []
    for preset in csv(args.presets):
        batch = getattr(args, f"{preset}_batch")
        images = getattr(args, f"{preset}_images")
        common = {"preset": preset, "precision": args.precision, "repeats": args.repeats}
        for backend in csv(args.backends):
            rows.append(run_child(dict(
                common, kind="augmentation_compiled", backend=backend,
                batch_size=batch,
                pipeline=f"compiled, {backend} ({COMPILED_NAMES[backend]})",
            )))
        rows.append(run_child(dict(
            common, kind="augmentation_tfdata", backend="tensorflow",
            batch_size=batch, images=images,
            pipeline="tf.data, pretraining_dataset (tensorflow)",
        )))
        reference = {
            "kind": "torchvision", "preset": preset, "repeats": args.repeats,
            "batch_size": batch, "images": images, "workers": args.workers,
            "pipeline": f"torchvision DataLoader, {args.workers} workers",
        }
        if skip_reason:
            rows.append(dict(reference, skipped=skip_reason))
        else:
            rows.append(run_child(reference, python=args.torchvision_python))
    for row in rows:
        if "times" in row:
            row["images_per_second"] = row["images"] / median(row["times"])
    return rows


def augmentation_table(rows, args):
    presets = ", ".join(
        f"{name} {PRESETS[name]['source_size']}x{PRESETS[name]['source_size']} -> "
        f"{PRESETS[name]['view_size']} px (batch {getattr(args, f'{name}_batch')})"
        for name in csv(args.presets)
    )
    lines = [
        f"SimCLRAugmentation, source images per second (two views each): {presets}; "
        f"{args.precision}; median of {args.repeats}\n",
        "| preset | pipeline | images/s | ratio to torchvision |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        speed = row.get("images_per_second")
        reference = next(
            (r.get("images_per_second") for r in rows
             if r["preset"] == row["preset"] and r["kind"] == "torchvision"),
            None,
        )
        if "skipped" in row:
            lines.append(
                f"| {row['preset']} | {row['pipeline']} | skipped: {row['skipped']}; "
                f"set it up with `{TORCHVISION_SETUP}` | |"
            )
            continue
        ratio = speed / reference if speed and reference else None
        lines.append(
            f"| {row['preset']} | {row['pipeline']} | {fmt(speed, '.1f')} | "
            f"{fmt(ratio, '.2f', 'n/a')} |"
        )
    return lines


# --- step ---


def step_config(backend, mode, precision, batch_size, image_size, args,
                network="resnet18", layers="fast", onednn="on"):
    return {
        "kind": "step", "backend": backend, "mode": mode, "precision": precision,
        "batch_size": batch_size, "image_size": image_size,
        "steps": args.steps, "warmup": args.warmup, "batches": 2,
        "network": network, "layers": layers, "onednn": onednn,
    }


def with_step_speed(row):
    if "times" in row:
        row["seconds_per_step"] = median(row["times"])
        row["images_per_second"] = row["batch_size"] / row["seconds_per_step"]
    return row


# (label, backend, mode, layers, oneDNN) of the step section, float32; the
# TensorFlow rows go from what a bare Keras user gets to what keras_simclr
# sets up. "library" makes the views in the step; the other modes are fed
# ready-made views, as the PyTorch loop is.
STEP_ROWS = (
    ("bare Keras step, Keras layers, TensorFlow's oneDNN default", "tensorflow", "bare", "keras", "default"),
    ("bare Keras step, Keras layers, oneDNN off", "tensorflow", "bare", "keras", "off"),
    ("bare Keras step, Keras layers, oneDNN on", "tensorflow", "bare", "keras", "on"),
    ("bare Keras step, fast layers, oneDNN on", "tensorflow", "bare", "fast", "on"),
    ("keras_simclr, views given", "tensorflow", "views", "fast", "on"),
    ("keras_simclr, augmentation in the step", "tensorflow", "library", "fast", "on"),
    ("bare Keras step, Keras layers", "torch", "bare", "keras", "default"),
    ("bare Keras step, fast layers", "torch", "bare", "fast", "default"),
    ("keras_simclr, views given", "torch", "views", "fast", "default"),
    ("keras_simclr, augmentation in the step", "torch", "library", "fast", "default"),
    ("keras_simclr, augmentation in the step", "jax", "library", "fast", "default"),
)
# In bfloat16 (CPUs with bfloat16 instructions only), the library's rows.
BF16_STEP_ROWS = tuple(
    row for row in STEP_ROWS
    if row[0].startswith("keras_simclr, augmentation")
)


def step_rows(args, has_bf16):
    backends = set(csv(args.backends))
    rows = []
    for network in csv(args.networks):
        plans = [(STEP_ROWS, "float32")]
        if has_bf16:
            plans.append((BF16_STEP_ROWS, "mixed_bfloat16"))
        for plan, precision in plans:
            for label, backend, mode, layers, onednn in plan:
                if backend not in backends:
                    continue
                config = step_config(
                    backend, mode, precision, args.batch_size, 32, args,
                    network=network, layers=layers, onednn=onednn,
                )
                rows.append(with_step_speed(run_child(dict(config, label=label))))
        for mode, precision in (("torch_fp32", "float32"),
                                ("torch_bf16", "bf16 autocast + channels_last")):
            config = dict(
                step_config("pytorch", mode, precision, args.batch_size, 32, args,
                            network=network),
                label="plain PyTorch loop",
            )
            if mode == "torch_bf16" and not has_bf16:
                rows.append(dict(config, skipped="no bfloat16 instructions on this CPU"))
            else:
                rows.append(with_step_speed(run_child(config)))
    return rows


def step_table(rows, args):
    lines = [
        f"Pretraining step, batch {args.batch_size} images of 32x32 (2 views "
        f"each), median of {args.steps} steps after {args.warmup}. Ratios are "
        "images/s over the plain PyTorch loop's of the same network, in "
        "float32 and in bf16 autocast + channels_last (where the CPU has "
        "bfloat16 instructions)\n",
        "| network | configuration | backend | precision | s/step | images/s | "
        "vs PyTorch fp32 | vs PyTorch bf16 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        references = {
            r["mode"]: r.get("images_per_second") for r in rows
            if r["backend"] == "pytorch" and r["network"] == row["network"]
        }
        if "skipped" in row:
            lines.append(
                f"| {row['network']} | {row['label']} | {row['backend']} | "
                f"{row['precision']} | skipped: {row['skipped']} | | | |"
            )
            continue
        speed = row.get("images_per_second")
        ratios = [
            fmt(speed / references[mode] if speed and references.get(mode) else None,
                ".2f", "n/a")
            for mode in ("torch_fp32", "torch_bf16")
        ]
        lines.append(
            f"| {row['network']} | {row['label']} | {row['backend']} | "
            f"{row['precision']} | {fmt(row.get('seconds_per_step'), '.2f')} | "
            f"{fmt(speed, '.1f')} | {ratios[0]} | {ratios[1]} |"
        )
    return lines


# --- scaling ---


def scaling_results(args):
    backend = args.scaling_backend
    by_batch = [
        with_step_speed(run_child(
            step_config(backend, "views", args.precision, batch, 32, args)
        ))
        for batch in csv(args.batch_sizes, int)
    ]
    by_size = [
        with_step_speed(run_child(
            step_config(backend, "views", args.precision, args.image_size_batch, size, args)
        ))
        for size in csv(args.image_sizes, int)
    ]
    batches = sorted({row["batch_size"] for row in by_batch + by_size})
    loss = run_child({
        "kind": "nt_xent", "backend": backend,
        "batch_sizes": batches, "repeats": args.repeats,
    })
    loss_seconds = {
        int(batch): median(times) for batch, times in loss.get("times", {}).items()
    }
    for row in by_batch + by_size:
        row["nt_xent_seconds"] = loss_seconds.get(row["batch_size"])
    return {"by_batch_size": by_batch, "by_image_size": by_size, "nt_xent": loss}


def scaling_lines(rows, key, header):
    lines = [
        f"| {header} | s/step | ms/image | NT-Xent ms | NT-Xent share of the step |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        seconds, loss = row.get("seconds_per_step"), row.get("nt_xent_seconds")
        per_image = seconds and 1000 * seconds / row["batch_size"]
        share = 100 * loss / seconds if seconds and loss else None
        lines.append(
            f"| {row[key]} | {fmt(seconds, '.3f')} | {fmt(per_image, '.2f')} | "
            f"{fmt(loss and 1000 * loss, '.2f')} | {fmt(share, '.1f', 'n/a')}% |"
        )
    return lines


def scaling_table(results, args):
    common = (
        f"{args.scaling_backend}, {args.precision}, step fed ready-made views "
        f"(no augmentation), median of {args.steps} steps after {args.warmup}; "
        f"NT-Xent forward and gradient, float32 (N, 128), median of {args.repeats}"
    )
    return (
        [f"Step time against the batch size, ResNet-18 (CIFAR stem), 32x32 images; {common}\n"]
        + scaling_lines(results["by_batch_size"], "batch_size", "batch")
        + [
            "",
            "Step time against the image size, ResNet-18 with the CIFAR stem at "
            f"every size (stride 1 first convolution, no max pooling), batch "
            f"{args.image_size_batch}; {common}\n",
        ]
        + scaling_lines(results["by_image_size"], "image_size", "image size")
    )


def scaling_plot(results, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["by_batch_size"] if "seconds_per_step" in r]
    batches = [r["batch_size"] for r in rows]
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.loglog(batches, [r["seconds_per_step"] for r in rows], "o-", label="step (views given)")
    loss_rows = [r for r in rows if r["nt_xent_seconds"] is not None]
    axes.loglog(
        [r["batch_size"] for r in loss_rows],
        [r["nt_xent_seconds"] for r in loss_rows],
        "s--", label="NT-Xent forward + gradient",
    )
    axes.set_xticks(batches, [str(b) for b in batches])
    axes.set_xlabel("batch size (images, 2 views each)")
    axes.set_ylabel("seconds")
    axes.set_title(
        f"SimCLR step, ResNet-18 CIFAR, 32x32, {args.scaling_backend} {args.precision}"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --- main ---


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--backends", default=",".join(KERAS_BACKENDS),
                        help="Keras backends of the augmentation and step sections")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "mixed_bfloat16"))
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed batches or epochs of the augmentation, NT-Xent calls")
    parser.add_argument("--presets", default="cifar,imagenet")
    parser.add_argument("--cifar_batch", type=int, default=256)
    parser.add_argument("--imagenet_batch", type=int, default=64)
    parser.add_argument("--cifar_images", type=int, default=4096,
                        help="images per epoch of the tf.data and torchvision pipelines")
    parser.add_argument("--imagenet_images", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2,
                        help="DataLoader worker processes of the torchvision reference")
    parser.add_argument("--torchvision_python", default="/tmp/tvenv/bin/python")
    parser.add_argument("--batch_size", type=int, default=256, help="of the step section")
    parser.add_argument("--networks", default="small_cnn,resnet18",
                        help="networks of the step section: small_cnn, resnet18")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--scaling_backend", default="tensorflow")
    parser.add_argument("--batch_sizes", default="64,128,256,512,1024")
    parser.add_argument("--image_sizes", default="32,64,128,224")
    parser.add_argument("--image_size_batch", type=int, default=32)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "speed.json"))
    args = parser.parse_args()
    unknown = set(csv(args.sections)) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    unknown = set(csv(args.presets)) - set(PRESETS)
    if unknown:
        parser.error(f"unknown presets {sorted(unknown)}; choose from {tuple(PRESETS)}")
    return args


def main():
    args = parse_args()
    if args.child:
        config = json.loads(args.child)
        print("RESULT " + json.dumps(CHILDREN[config["kind"]](config)))
        return

    sections = csv(args.sections)
    torchvision_versions, skip_reason = torchvision_status(args.torchvision_python)
    machine = machine_info(torchvision_versions)
    has_bf16 = bool(machine["cpu_bf16_instructions"])
    if args.precision == "auto":
        args.precision = "mixed_bfloat16" if has_bf16 else "float32"
    results = {
        "command": shlex.join([sys.executable] + sys.argv),
        "machine": machine,
        "arguments": {k: v for k, v in vars(args).items() if k != "child"},
    }
    markdown = [
        f"# keras_simclr speed ({results['machine']['date']})",
        "",
        f"{results['machine']['cpu_model']}, {results['machine']['cpu_count']} cores, "
        f"bfloat16 instructions: {', '.join(results['machine']['cpu_bf16_instructions']) or 'none'}; "
        + ", ".join(f"{k} {v}" for k, v in results["machine"]["versions"].items() if v),
        "",
        f"`{results['command']}`",
    ]
    output_dir = os.path.dirname(os.path.abspath(args.output))
    if "augmentation" in sections:
        rows = augmentation_rows(args, skip_reason)
        results["augmentation"] = {"rows": rows, "table": augmentation_table(rows, args)}
    if "step" in sections:
        rows = step_rows(args, has_bf16)
        results["step"] = {"rows": rows, "table": step_table(rows, args)}
    if "scaling" in sections:
        scaling = scaling_results(args)
        results["scaling"] = dict(scaling, table=scaling_table(scaling, args))
        os.makedirs(output_dir, exist_ok=True)
        scaling_plot(scaling, args, os.path.join(output_dir, "speed_scaling.png"))
    for section in sections:
        markdown += ["", f"## {section}", ""] + results[section]["table"]

    print("\n".join(markdown))
    _report.write_results(args.output, results, markdown)


if __name__ == "__main__":
    main()
