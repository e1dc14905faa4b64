r"""lightly's SimCLR on CIFAR-10 for `quality_cifar10.py --runs=lightly`.

Runs under the interpreter of a separate virtual environment that has lightly
(never a dependency of keras_simclr):

    python -m venv /tmp/lvenv && /tmp/lvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 lightly==1.6.0

The parent writes the images to an `.npz` file and passes a JSON job; this
script trains for the job's budget and writes back only features, which the
parent scores with the same kNN and linear evaluation as keras_simclr's run:

- network: torchvision's ResNet-18 with the CIFAR stem (3x3 convolution with
  stride 1, no max pooling), the last batch norm of each block starting at
  zero (as keras_simclr's ResNet), batch norm momentum 0.1 in PyTorch's
  convention (0.9 in Keras's), epsilon 1e-5; lightly's
  `SimCLRProjectionHead(512, 512, 128)`;
- objective: lightly's `NTXentLoss` at the job's temperature;
- optimizer: lightly's `LARS`, momentum 0.9, weight decay 1e-6 (batch-norm
  parameters and biases excluded from it and from the trust ratio), learning rate
  `lr * batch / 256` after a linear warm-up over the first
  `warmup_fraction` of the budget, then a cosine to 0, set every
  `steps_per_round` steps from the fraction of the budget spent (training
  time, evaluation excluded), exactly as the parent's keras_simclr run;
- views: lightly's `SimCLRTransform` at 32 px with the CIFAR settings of the
  paper (colour strength 0.5, no blur, crop scale 0.08 to 1) and no mean/std
  normalisation (keras_simclr's ResNet takes pixels in [0, 1] too), made by a
  `DataLoader` with `workers` processes, as lightly's users run it;
- precision: float32, or with the job's `mixed_precision` PyTorch's fastest
  CPU setting, as keras_simclr's `mixed_bfloat16` run: the forward pass under
  `torch.autocast("cpu", dtype=torch.bfloat16)`, model and views in the
  `channels_last` memory format, NT-Xent on the float32 projections.
"""

import json
import math
import sys
import time

import numpy as np


def warmup_cosine(progress, peak, warmup_fraction):
    # The parent's schedule (quality_cifar10.warmup_cosine), kept in step.
    if progress < warmup_fraction:
        return peak * (progress + 1e-3) / warmup_fraction
    decay = (progress - warmup_fraction) / (1.0 - warmup_fraction)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(decay, 1.0)))


def build_model(torch, torchvision, SimCLRProjectionHead):
    resnet = torchvision.models.resnet18(zero_init_residual=True)
    resnet.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    resnet.maxpool = torch.nn.Identity()
    resnet.fc = torch.nn.Identity()
    for module in resnet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum, module.eps = 0.1, 1e-5
    return resnet, SimCLRProjectionHead(512, 512, 128)


def features(torch, backbone, images, batch_size=500):
    backbone.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
            out.append(backbone(batch).numpy())
    backbone.train()
    return np.concatenate(out)


def main():
    job = json.loads(sys.argv[1])
    import torch
    import torchvision
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from lightly.utils.lars import LARS
    from PIL import Image

    torch.manual_seed(job["seed"])
    arrays = np.load(job["arrays"])
    train_images = arrays["train_images"]
    transform = SimCLRTransform(
        input_size=32, cj_strength=0.5, gaussian_blur=0.0, min_scale=0.08, normalize=None
    )

    class Views(torch.utils.data.Dataset):
        def __len__(self):
            return len(train_images)

        def __getitem__(self, index):
            return transform(Image.fromarray(train_images[index]))

    loader = torch.utils.data.DataLoader(
        Views(), batch_size=job["batch_size"], shuffle=True, drop_last=True,
        num_workers=job["workers"], persistent_workers=job["workers"] > 0,
    )
    backbone, head = build_model(torch, torchvision, SimCLRProjectionHead)
    criterion = NTXentLoss(temperature=job["temperature"])
    peak = job["learning_rate"] * job["batch_size"] / 256
    # As keras_simclr's LARS and the official code: batch-norm parameters and
    # biases get neither weight decay nor the trust ratio (lightly's LARS
    # skips the ratio where a group's weight decay is 0).
    parameters = list(backbone.parameters()) + list(head.parameters())
    optimizer = LARS(
        [
            {"params": [p for p in parameters if p.ndim > 1], "weight_decay": 1e-6},
            {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=peak, momentum=0.9,
    )
    budget_seconds, budget_steps = job.get("seconds"), job.get("steps")

    def progress(seconds, steps):
        return seconds / budget_seconds if budget_seconds else steps / budget_steps

    curve_train, curve_test = arrays["curve_train_images"], arrays["curve_test_images"]
    curve = []
    train_seconds, steps, next_eval = 0.0, 0, 0.0

    def record():
        nonlocal next_eval
        curve.append({
            "minutes": train_seconds / 60, "steps": steps,
            "train": features(torch, backbone, curve_train),
            "test": features(torch, backbone, curve_test),
        })
        next_eval += job["eval_every_seconds"]

    mixed = job.get("mixed_precision", False)
    if mixed:
        backbone = backbone.to(memory_format=torch.channels_last)

    def step_loss(view_a, view_b):
        if not mixed:
            return criterion(head(backbone(view_a)), head(backbone(view_b)))
        projections = []
        for view in (view_a, view_b):
            view = view.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                projections.append(head(backbone(view)))
        return criterion(*(z.float() for z in projections))

    record()
    batches = iter(loader)
    done = False
    while not done:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(progress(train_seconds, steps), peak, job["warmup_fraction"])
        start = time.perf_counter()
        for _ in range(job["steps_per_round"]):
            try:
                view_a, view_b = next(batches)
            except StopIteration:
                batches = iter(loader)
                view_a, view_b = next(batches)
            loss = step_loss(view_a, view_b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        train_seconds += time.perf_counter() - start
        steps += job["steps_per_round"]
        done = progress(train_seconds, steps) >= 1.0
        if done or train_seconds >= next_eval:
            record()
    np.savez(
        job["output"],
        eval_train=features(torch, backbone, arrays["eval_train_images"]),
        eval_test=features(torch, backbone, arrays["eval_test_images"]),
        **{f"curve_{i}_{part}": point[part] for i, point in enumerate(curve) for part in ("train", "test")},
    )
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    try:
        import importlib.metadata

        versions["lightly"] = importlib.metadata.version("lightly")
    except Exception:
        pass
    print("RESULT " + json.dumps({
        "train_seconds": train_seconds, "steps": steps,
        "curve": [{"minutes": p["minutes"], "steps": p["steps"]} for p in curve],
        "versions": versions, "final_loss": float(loss.detach()),
    }), flush=True)


if __name__ == "__main__":
    main()
