r"""Times one SimCLR pretraining step on each Keras backend, and references.

The model of the targets: ResNet-18 with the CIFAR stem, 2-layer projection
head, NT-Xent, SGD with momentum, batch of 256 images of 32x32 (512 views).
Each configuration runs in its own process (a Keras backend is chosen at
import), times `--steps` steps after `--warmup` untimed ones, and reports the
median seconds per step:

- `keras_simclr`: `SimCLRPretrainer.fit` on raw images, augmentation inside the
  step (the library as users run it);
- `keras_simclr, views given`: the same fed pre-made views, so the difference
  to the bare step below is the library's own overhead;
- `bare keras`: a hand-written `keras.Model` with the same encoder and head,
  NT-Xent in `compute_loss`, fed the same pre-made views;
- `plain pytorch`: a plain PyTorch loop of the same architecture and loss,
  in float32 and in its best CPU configuration (bf16 autocast +
  channels_last).

Two networks (`--networks`): `resnet18` (the library's ResNet-18, CIFAR
stem) and `small_cnn` (four 3x3 convolutions with batch norm and ReLU, 64,
128, 256 and 512 channels, the last three with stride 2, then global average
pooling: the network of a quick CIFAR check). Keras configurations take two
more settings, each child process its own:

- `layers`: `fast` (the library's `ChannelsLastConv2D` and
  `FusedBatchNormalization`, what keras_simclr builds) or `keras` (Keras's own
  `Conv2D` and `BatchNormalization`, what a bare Keras model has);
- `onednn`: `default` (TensorFlow's own choice for this CPU: the child imports
  Keras, hence TensorFlow, before keras_simclr, as a user's script that never
  heard of the setting does), `on` or `off` (`TF_ENABLE_ONEDNN_OPTS=1`/`0`
  set before TensorFlow loads).

    python benchmarks/pretrain_step.py                       # everything
    python benchmarks/pretrain_step.py --backends=tensorflow --precisions=mixed_bfloat16

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


def child_keras(config):
    import keras
    import numpy as np

    sys.path.insert(0, ROOT)
    import keras_simclr
    from keras_simclr.losses import nt_xent

    if config["precision"] == "mixed_bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    batch, size = config["batch_size"], config["image_size"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(batch * config["batches"], size, size, 3)).astype("uint8")

    encoder = build_encoder(config.get("network", "resnet18"), size)
    if config.get("layers", "fast") == "keras":
        encoder = with_keras_layers(encoder)
    head = keras_simclr.layers.ProjectionHead(output_dim=128, num_layers=2)
    if config.get("layers", "fast") == "keras":
        head = keras_head(head)
    mode = config["mode"]
    if mode == "bare":

        class BareSimCLR(keras.Model):
            def __init__(self, encoder, head):
                super().__init__()
                self.encoder, self.head = encoder, head

            def call(self, views, training=False):
                both = keras.ops.concatenate([views["view_a"], views["view_b"]], 0)
                return self.head(self.encoder(both, training=training), training=training)

            def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
                z_a, z_b = keras.ops.split(y_pred, 2, axis=0)
                return nt_xent(z_a, z_b, 0.5)

        model = BareSimCLR(encoder, head)
    else:
        augmentation = None
        if mode == "library":
            augmentation = keras_simclr.layers.SimCLRAugmentation(size, preset="cifar", seed=0)
        model = keras_simclr.models.SimCLRPretrainer(
            encoder, augmentation=augmentation, projection_head=head,
            objective=keras_simclr.objectives.SimCLR(temperature=0.5),
        )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        jit_compile=config.get("jit_compile", "auto"),
    )
    if mode == "library":
        x = images
    else:
        views = images.astype("float32")
        x = {"view_a": views, "view_b": views[:, :, ::-1]}

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            # Reading the loss waits for the step (asynchronous on a GPU).
            float(keras.ops.convert_to_numpy((logs or {}).get("loss", 0.0)))
            self.times.append(time.perf_counter() - self.start)

    timer = Timer()
    steps = config["warmup"] + config["steps"]
    repeats = -(-steps // config["batches"])
    model.fit(
        keras.tree.map_structure(lambda a: np.concatenate([a] * repeats), x),
        batch_size=batch,
        epochs=1,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[timer],
        shuffle=False,
    )
    return timer.times[config["warmup"] :]


def build_encoder(network, size):
    """The library's ResNet-18 (CIFAR stem) or the small CNN, built with the
    library's layers."""
    import keras
    import keras_simclr

    if network == "resnet18":
        return keras_simclr.models.ResNet(18, cifar_stem=True, input_shape=(size, size, 3))
    if network != "small_cnn":
        raise ValueError(f"unknown network {network!r}")
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for filters, strides in SMALL_CNN:
        x = keras_simclr.layers.ChannelsLastConv2D(
            filters, 3, strides=strides, padding="same" if strides == 1 else "valid",
            use_bias=False,
        )(keras.layers.ZeroPadding2D(1)(x) if strides > 1 else x)
        x = keras_simclr.layers.FusedBatchNormalization(momentum=0.9, epsilon=1e-5)(x)
        x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


# (filters, stride) of the small CNN's convolutions.
SMALL_CNN = ((64, 1), (128, 2), (256, 2), (512, 2))


def with_keras_layers(model):
    """`model` cloned with Keras's own Conv2D and BatchNormalization."""
    import keras
    from keras_simclr.layers.fast_layers import FASTER_LAYERS

    plain = {faster: keras_layer for keras_layer, faster in FASTER_LAYERS.items()}
    return keras.models.clone_model(
        model,
        clone_function=lambda layer: plain.get(type(layer), type(layer)).from_config(
            layer.get_config()
        ),
        recursive=True,
    )


def keras_head(head):
    """`head` (a ProjectionHead) with Keras's own BatchNormalization."""
    import keras

    head.batch_norm_layers = [
        keras.layers.BatchNormalization.from_config(layer.get_config())
        for layer in head.batch_norm_layers
    ]
    return head


def child_torch(config):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)
    batch, size = config["batch_size"], config["image_size"]

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return F.relu(out + self.shortcut(x))

    if config.get("network", "resnet18") == "small_cnn":
        layers, cin = [], 3
        for cout, stride in SMALL_CNN:
            layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
    else:
        layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
        cin = 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    model = nn.Sequential(
        *layers,
        nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, 128, bias=False), nn.BatchNorm1d(128, affine=True),
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    best = config["mode"] == "torch_bf16"
    model = model.to(device)
    if best:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    views = torch.rand(2 * batch, 3, size, size, device=device)
    if best:
        views = views.contiguous(memory_format=torch.channels_last)

    def nt_xent(z, t=0.5):
        z = F.normalize(z.float(), dim=1)
        logits = z @ z.T / t
        logits.fill_diagonal_(-1e9)
        n = z.shape[0] // 2
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(device)
        return F.cross_entropy(logits, targets)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    times = []
    for step in range(config["warmup"] + config["steps"]):
        sync()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=best):
            loss = nt_xent(model(views))
        loss.backward()
        optimizer.step()
        sync()
        times.append(time.perf_counter() - start)
    return times[config["warmup"] :]


def child_environment(config):
    """The environment of a child: its Keras backend and oneDNN setting."""
    env = dict(os.environ)
    if config.get("backend") not in (None, "pytorch"):
        env["KERAS_BACKEND"] = config["backend"]
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Without a setting, what importing keras_simclr first gives: oneDNN on.
    onednn = config.get("onednn", "on")
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if onednn != "default":
        env["TF_ENABLE_ONEDNN_OPTS"] = {"on": "1", "off": "0"}[onednn]
    return env


def run_child(config):
    env = child_environment(config)
    result = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)],
        env=env, capture_output=True, text=True,
    )
    lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        return {"error": (result.stderr or result.stdout)[-2000:]}
    return json.loads(lines[-1][len("RESULT "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--backends", default="tensorflow,jax,torch,pytorch")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--modes", default="library,views,bare")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "pretrain_step.json"))
    args = parser.parse_args()

    if args.child:
        config = json.loads(args.child)
        times = child_torch(config) if config["backend"] == "pytorch" else child_keras(config)
        print("RESULT " + json.dumps({"times": times}))
        return

    rows = []
    for backend in args.backends.split(","):
        if backend == "pytorch":
            modes = [("torch_fp32", "float32"), ("torch_bf16", "bf16 autocast + channels_last")]
        else:
            modes = [
                (mode, precision)
                for precision in args.precisions.split(",")
                for mode in args.modes.split(",")
            ]
        for mode, precision in modes:
            config = {
                "backend": backend, "mode": mode, "precision": precision,
                "batch_size": args.batch_size, "image_size": args.image_size,
                "steps": args.steps, "warmup": args.warmup, "batches": 2,
            }
            result = run_child(config)
            row = dict(config)
            if "error" in result:
                row["error"] = result["error"]
                print(f"{backend} {mode} {precision}: FAILED\n{result['error']}", flush=True)
            else:
                times = sorted(result["times"])
                row["seconds_per_step"] = times[len(times) // 2]
                row["times"] = result["times"]
                print(f"{backend:10s} {mode:8s} {precision:16s} {row['seconds_per_step']:.2f} s/step", flush=True)
            rows.append(row)

    names = {
        "library": "keras_simclr (augmentation in the step)",
        "views": "keras_simclr, views given",
        "bare": "bare Keras step, views given",
        "torch_fp32": "plain PyTorch loop",
        "torch_bf16": "plain PyTorch loop",
    }
    table = [
        f"ResNet-18 (CIFAR stem), batch {args.batch_size} images of "
        f"{args.image_size}x{args.image_size} (2 views each), median of {args.steps} steps\n",
        "| backend | configuration | precision | s/step | images/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        seconds = row.get("seconds_per_step")
        speed = f"{args.batch_size / seconds:.1f}" if seconds else "failed"
        table.append(
            f"| {row['backend']} | {names[row['mode']]} | {row['precision']} | "
            f"{seconds and f'{seconds:.2f}' or 'failed'} | {speed} |"
        )
    print("\n".join(table))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"rows": rows, "table": table}, f, indent=2)


if __name__ == "__main__":
    main()
