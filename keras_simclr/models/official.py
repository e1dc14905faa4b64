"""The official SimCLR v1 and v2 models (google-research/simclr) as
keras_simclr models, on every backend.

Google published the SimCLR models as TensorFlow 2 checkpoints and
SavedModels (`gs://simclr-checkpoints-tf2/simclrv1/...` and
`.../simclrv2/{pretrained,finetuned_*,distill_*,supervised}/<name>/`).
`load_official` reads their variables with TensorFlow's checkpoint reader
alone (the official code is not needed), infers the network from them
(depth, width, selective kernels, stem, projection head, supervised head)
and returns the keras_simclr model with the same weights: a
`SimCLRPretrainer` for a pretrained file (its encoder, its projection head
with the official batch norms, and the file's linear-evaluation head as the
probe), a `SimCLRClassifier` for a fine-tuned or supervised one. The
model computes what the official model computes (tests/official compare
both on the same images: features, every projection-head layer, logits),
and carries the official evaluation transform: a centre crop of 87.5% of
the image resized bicubically to `image_size` (the whole image for
CIFAR-stem models), pixels `[0, 255]` scaled to `[0, 1]`.

How the variables are found. Both formats store each variable once, under
a key of the object graph: a checkpoint under the path of attributes that
leads to it (`model/resnet_model/block_groups/0/layers/0/...`), a
SavedModel often under a shorter one (`model/resnet_model/variables/17`).
The object graph that both files hold lists every path; the converter
names each variable by its path through the layers' own attributes, so
both formats read the same.

The mapping. The official `Resnet` keeps its layers in lists (the stem's
`initial_conv_relu_max_pool`, each block's `conv_relu_dropblock_layers` or
`conv2d_bn_layers`, its shortcut's `projection_layers` or
`shortcut_layers`), whose convolutions and batch norms come in the same
order as those of `keras_simclr.models.ResNet`'s layers of the same block
(a selective-kernel convolution as its 3x3 convolution to two branches,
its batch norm, then the mixing's reduce convolution, batch norm and
expand convolution). Kernels are HWIO in both; batch norms hold gamma,
beta (absent where the official layer has no shift), moving mean and
moving variance.
"""

import os
import re

import numpy as np

from keras_simclr import _validation
from keras_simclr.layers.projection_head import ProjectionHead
from keras_simclr.layers.simclr_augmentation import SimCLRAugmentation
from keras_simclr.models.resnet import RESNET_ARCHITECTURES
from keras_simclr.models.resnet import SELECTIVE_KERNEL_MIN_CHANNELS
from keras_simclr.models.resnet import ResNet

# SimCLR v2's selective-kernel ratio.
SK_RATIO = 0.0625
# The official evaluation image size of the ImageNet models.
IMAGENET_IMAGE_SIZE = 224
CIFAR_IMAGE_SIZE = 32
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
# Object-graph edges that lead to a variable by a list of a layer's
# variables rather than by the attributes that hold it.
_VARIABLE_LISTS = {
    "variables",
    "trainable_variables",
    "non_trainable_variables",
    "trainable_weights",
    "non_trainable_weights",
    "weights",
    "trainable_variables_list",
    "keras_api",
}
_MAIN_LAYERS = {
    "bottleneck": "conv_relu_dropblock_layers",
    "basic": "conv2d_bn_layers",
}
_SHORTCUT_LAYERS = {
    "bottleneck": "projection_layers",
    "basic": "shortcut_layers",
}


def load_official(path, head_layers=None, image_size=None):
    """A keras_simclr model with the weights of an official SimCLR file.

    Args:
        path: a TensorFlow 2 checkpoint of the official code (its prefix,
            e.g. `.../ckpt-0`, or a directory holding a `checkpoint` file),
            or a SavedModel directory (`.../saved_model/` or its numbered
            export); or an `OfficialCheckpoint` already opened on one.
        head_layers: `None` for a pretrained file: a `SimCLRPretrainer` is
            returned, whose probe is the file's supervised head on the
            features (the linear evaluation trained with the official
            pretraining). An int for a fine-tuned file: a `SimCLRClassifier`
            whose classifier reads the output of that many projection-head
            layers, as the official `--ft_proj_selector` (0: the features;
            SimCLR v2 fine-tunes from the first layer, 1). A file without a
            projection head (supervised and distilled students) gives a
            `SimCLRClassifier` on the features whatever it is.
        image_size: the size of the evaluation transform's output; default
            224 (32 for a CIFAR-stem network).

    Returns:
        A built `SimCLRPretrainer` or `SimCLRClassifier`, on the current
        backend.

    Raises:
        ValueError: when `path` holds no checkpoint, when its variables are
            not those of an official SimCLR ResNet (naming what was found),
            or for a fine-tuned file without `head_layers`.
    """
    from keras_simclr.models.simclr_classifier import SimCLRClassifier
    from keras_simclr.models.simclr_pretrainer import SimCLRPretrainer

    checkpoint = path if isinstance(path, OfficialCheckpoint) else OfficialCheckpoint(path)
    path = checkpoint.path
    architecture = checkpoint.architecture()
    if head_layers is not None:
        head_layers = _validation.check_int(head_layers, "head_layers", minimum=0)
    if (
        head_layers is None
        and architecture["projection_head"]
        and "finetuned" in str(path)
    ):
        raise ValueError(
            "A fine-tuned official file does not record which projection-head "
            "layer its classifier reads: give head_layers (the official "
            "--ft_proj_selector it was fine-tuned with; 0 for the features). "
            f"Received: head_layers=None for path={path!r}"
        )
    if image_size is None:
        image_size = (
            CIFAR_IMAGE_SIZE if architecture["cifar_stem"] else IMAGENET_IMAGE_SIZE
        )
    height, width = _validation.check_image_size(image_size)
    encoder = ResNet(
        architecture["depth"],
        width_multiplier=architecture["width_multiplier"],
        cifar_stem=architecture["cifar_stem"],
        sk_ratio=architecture["sk_ratio"],
        project_first_shortcut=architecture["block"] == "basic",
        name="encoder",
    )
    checkpoint.assign_encoder(encoder)
    num_classes = architecture["num_classes"]
    augmentation = SimCLRAugmentation(
        (height, width), preset="cifar" if architecture["cifar_stem"] else "imagenet"
    )
    head = None
    if architecture["projection_head"]:
        widths = architecture["projection_head"]
        head = ProjectionHead(output_dim=widths[-1], num_layers=len(widths))
        head.build((None, encoder.feature_dim))
        checkpoint.assign_projection_head(head)
    if head is not None and head_layers is None:
        model = SimCLRPretrainer(
            encoder,
            augmentation=augmentation,
            projection_head=head,
            num_classes=num_classes,
        )
        model.build((None, height, width, 3))
        if num_classes is not None:
            checkpoint.assign_linear(model.probe, encoder.feature_dim)
        return model
    if num_classes is None:
        raise ValueError(
            "The official file has no supervised head, so it cannot be a "
            "classifier: load it with head_layers=None for a pretrainer. "
            f"Received: head_layers={head_layers} for path={path!r}"
        )
    head_layers = head_layers or 0
    if head is None and head_layers:
        raise ValueError(
            "The official file has no projection head to fine-tune from: "
            f"give head_layers=0. Received: head_layers={head_layers}"
        )
    if head is not None and head_layers > head.num_layers:
        raise ValueError(
            f"head_layers must be at most the {head.num_layers} layers of the "
            f"file's projection head. Received: head_layers={head_layers}"
        )
    if head is not None:
        base = SimCLRPretrainer(encoder, augmentation=augmentation, projection_head=head)
        base.build((None, height, width, 3))
    else:
        base = encoder
    model = SimCLRClassifier(
        base,
        num_classes,
        head_layers=head_layers,
        evaluation_transform=augmentation if head is None else None,
    )
    model.build((None, height, width, 3))
    read = encoder.feature_dim
    if head_layers:
        read = head.dense_layers[head_layers - 1].units
    checkpoint.assign_linear(model.linear_classifier, read)
    return model


def checkpoint_prefix(path):
    """The checkpoint prefix of `path`: itself, the latest checkpoint of a
    directory, or a SavedModel's `variables/variables`."""
    path = _validation.check_path(path)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            return os.path.join(path, "variables", "variables")
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(path)
        if latest is not None:
            return latest
        raise ValueError(
            "path is a directory with neither a SavedModel (saved_model.pb) "
            f"nor a checkpoint file. Received: path={path!r} holding "
            f"{sorted(os.listdir(path))[:10]}"
        )
    if path.endswith(".index"):
        return path[: -len(".index")]
    match = re.match(r"(.*)\.data-\d+-of-\d+$", path)
    if match:
        return match.group(1)
    if not os.path.exists(path + ".index"):
        raise ValueError(
            "path is neither a SavedModel directory nor a TensorFlow "
            f"checkpoint (no {os.path.basename(path)}.index next to it). "
            f"Received: path={path!r}"
        )
    return path


def variable_names(reader):
    """`{name: checkpoint key}` for every variable of a checkpoint read by
    `reader`: each variable named by its path from the root through the
    attributes of its layers, not through their lists of variables."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    names, seen, queue = {}, {0}, [(0, "")]
    # Breadth first, as TensorFlow names a checkpoint's variables: the
    # first path found is the shortest.
    while queue:
        following = []
        for node_id, path in queue:
            node = graph.nodes[node_id]
            for attribute in node.attributes:
                if attribute.name == "VARIABLE_VALUE":
                    names.setdefault(path, attribute.checkpoint_key)
            for child in node.children:
                if child.local_name in _VARIABLE_LISTS or child.node_id in seen:
                    continue
                seen.add(child.node_id)
                name = f"{path}/{child.local_name}" if path else child.local_name
                following.append((child.node_id, name))
        queue = following
    return names


class OfficialCheckpoint:
    """The variables of an official SimCLR file, by name under the model
    root (`resnet_model/...`, `_projection_head/...`,
    `supervised_head/...`)."""

    def __init__(self, path):
        import tensorflow as tf

        self.path = path
        prefix = checkpoint_prefix(path)
        try:
            self._reader = tf.train.load_checkpoint(prefix)
        except Exception as error:  # noqa: BLE001 - TF's errors vary by version
            raise ValueError(
                f"path could not be read as a TensorFlow checkpoint: {error}. "
                f"Received: path={path!r}"
            ) from None
        shapes = self._reader.get_variable_to_shape_map()
        if "_CHECKPOINTABLE_OBJECT_GRAPH" not in shapes:
            raise ValueError(
                "path is a name-based (TF1) checkpoint; this converter reads "
                "the TensorFlow 2 checkpoints and SavedModels of the official "
                "code (gs://simclr-checkpoints-tf2/...). Received: "
                f"path={path!r} with {len(shapes)} variables such as "
                f"{sorted(shapes)[:3]}"
            )
        names = variable_names(self._reader)
        roots = {name.split("resnet_model/")[0] for name in names if "resnet_model/" in name}
        if len(roots) != 1:
            raise ValueError(
                "path does not hold an official SimCLR model: no "
                "`resnet_model` in its variables (or several). Received: "
                f"path={path!r} with variables such as {sorted(names)[:5]}"
            )
        root = roots.pop()
        self._keys = {
            name[len(root):]: key for name, key in names.items() if name.startswith(root)
        }
        self._shapes = {
            name: tuple(shapes[key]) for name, key in self._keys.items()
        }
        self._architecture = None

    def has(self, name):
        return name in self._keys

    def shape(self, name):
        return self._shapes[name]

    def get(self, name):
        return self._reader.get_tensor(self._keys[name])

    def _indexed(self, prefix):
        """`{index: rest}` of the names `prefix/<index>/<rest>`, each index
        with the set of its rests."""
        entries = {}
        pattern = re.compile(re.escape(prefix) + r"/(\d+)/(.+)$")
        for name in self._keys:
            match = pattern.match(name)
            if match:
                entries.setdefault(int(match.group(1)), set()).add(match.group(2))
        return dict(sorted(entries.items()))

    def _slots(self, prefix):
        """The convolutions and batch norms in the list `prefix`, in order:
        `(kind, name)` with kind "conv" (name: its kernel) or "bn" (name:
        the batch norm's prefix). A selective-kernel convolution gives five
        slots: its two-branch convolution, batch norm, then the mixing's
        reduce convolution, batch norm and expand convolution."""
        slots = []
        for index, rests in self._indexed(prefix).items():
            at = f"{prefix}/{index}"
            if "conv2d_fixed_padding/conv2d/kernel" in rests:
                slots += [
                    ("conv", f"{at}/conv2d_fixed_padding/conv2d/kernel"),
                    ("bn", f"{at}/batch_norm_relu/bn"),
                    ("conv", f"{at}/conv2d_0/kernel"),
                    ("bn", f"{at}/batch_norm_relu_1/bn"),
                    ("conv", f"{at}/conv2d_1/kernel"),
                ]
            elif "conv2d/kernel" in rests:
                slots.append(("conv", f"{at}/conv2d/kernel"))
            elif any(rest.startswith("bn/") for rest in rests):
                slots.append(("bn", f"{at}/bn"))
        return slots

    # === The architecture ===

    def architecture(self):
        """The network the variables describe: `depth`, `block`,
        `width_multiplier`, `sk_ratio`, `cifar_stem`, `projection_head`
        (the widths of its layers, empty without one) and `num_classes`
        (None without a supervised head). Read once, on the first call."""
        if self._architecture is None:
            self._architecture = self._read_architecture()
        return dict(self._architecture)

    def _read_architecture(self):
        groups = self._indexed("resnet_model/block_groups")
        blocks = tuple(
            len(self._indexed(f"resnet_model/block_groups/{g}/layers")) for g in groups
        )
        block = None
        for kind, container in _MAIN_LAYERS.items():
            if any(container in name for name in self._keys):
                block = kind
        depth = next(
            (
                d
                for d, (kind, counts) in RESNET_ARCHITECTURES.items()
                if kind == block and counts == blocks
            ),
            None,
        )
        if depth is None:
            raise ValueError(
                "path holds a ResNet that is none of the official depths "
                f"({sorted(RESNET_ARCHITECTURES)}): {block} blocks, "
                f"{blocks} per group. Received: path={self.path!r}"
            )
        stem = [
            name
            for kind, name in self._slots("resnet_model/initial_conv_relu_max_pool")
            if kind == "conv"
        ]
        stem_out = self.shape(stem[-1])[-1]
        if stem_out % 64:
            raise ValueError(
                "path holds a ResNet whose stem has "
                f"{stem_out} channels, not a multiple of 64 (the official "
                f"widths are 64 times 1 to 4). Received: path={self.path!r}"
            )
        width = stem_out // 64
        cifar_stem = len(stem) == 1 and self.shape(stem[0])[0] == 3
        resnet_d = self._shortcuts_pool()
        sk_ratio = 0.0
        if resnet_d or len(stem) == 3:
            sk_ratio = self._sk_ratio(block, width)
        head = []
        for index in self._indexed("_projection_head/linear_layers"):
            head.append(self.shape(f"_projection_head/linear_layers/{index}/dense/kernel")[-1])
        num_classes = None
        if self.has("supervised_head/linear_layer/dense/kernel"):
            num_classes = self.shape("supervised_head/linear_layer/dense/kernel")[-1]
        return {
            "depth": depth,
            "block": block,
            "width_multiplier": width,
            "sk_ratio": sk_ratio,
            "cifar_stem": cifar_stem,
            "projection_head": head,
            "num_classes": num_classes,
        }

    def _shortcuts_pool(self):
        """Whether the projection shortcuts average-pool before their
        convolution (ResNet-D, with selective kernels): the convolution is
        then not the first entry of the shortcut's list."""
        for name in self._keys:
            match = re.search(r"/(projection_layers|shortcut_layers)/(\d+)/conv2d/kernel$", name)
            if match:
                return int(match.group(2)) > 0
        return False

    def _sk_ratio(self, block, width):
        """The selective-kernel ratio: SimCLR v2's 0.0625 where it gives
        every block's mixing width (a ratio only shows where the width is
        above its minimum of 32), else the one an unclamped width gives."""
        if block == "basic":
            # Basic blocks keep plain convolutions: any ratio builds them.
            return SK_RATIO
        widths = []
        for name, shape in self._shapes.items():
            match = re.search(r"block_groups/(\d+)/.*/conv2d_0/kernel$", name)
            if match:
                filters = 64 * width * 2 ** int(match.group(1))
                widths.append((filters, shape[-1]))
        candidates = [SK_RATIO] + [
            mid / filters
            for filters, mid in widths
            if mid > SELECTIVE_KERNEL_MIN_CHANNELS
        ]
        for ratio in candidates:
            if all(
                max(int(filters * ratio), SELECTIVE_KERNEL_MIN_CHANNELS) == mid
                for filters, mid in widths
            ):
                return ratio
        raise ValueError(
            "path holds selective-kernel blocks whose mixing widths "
            f"({sorted(set(widths))}, as (filters, width)) follow no single "
            f"ratio. Received: path={self.path!r}"
        )

    # === Assigning the weights ===

    def assign_encoder(self, encoder):
        """Gives `encoder` (a `ResNet` of `architecture()`) the file's
        weights."""
        official = self._slots("resnet_model/initial_conv_relu_max_pool")
        ours = _stem_layers(encoder)
        groups = self._indexed("resnet_model/block_groups")
        block = self.architecture()["block"]
        for g in groups:
            for b in self._indexed(f"resnet_model/block_groups/{g}/layers"):
                at = f"resnet_model/block_groups/{g}/layers/{b}"
                prefix = f"group{g + 1}_block{b + 1}"
                official += self._slots(f"{at}/{_MAIN_LAYERS[block]}")
                ours += _block_layers(encoder, prefix, block)
                shortcut = self._slots(f"{at}/{_SHORTCUT_LAYERS[block]}")
                if shortcut:
                    official += shortcut
                    ours += [
                        encoder.get_layer(f"{prefix}_shortcut_conv"),
                        encoder.get_layer(f"{prefix}_shortcut_bn"),
                    ]
        if len(official) != len(ours):
            raise ValueError(
                f"path holds {len(official)} convolutions and batch norms in "
                f"its ResNet where the network it describes has {len(ours)}. "
                f"Received: path={self.path!r}"
            )
        for (kind, name), layer in zip(official, ours):
            if kind == "conv":
                _assign(layer, [conv_kernel(self.get(name))], name)
            else:
                _assign(layer, batch_norm_weights(self, name, layer), name)

    def assign_projection_head(self, head):
        """Gives `head` (a built `ProjectionHead`) the file's projection
        head: per layer, the dense kernel and the batch norm."""
        for index in range(head.num_layers):
            at = f"_projection_head/linear_layers/{index}"
            _assign(head.dense_layers[index], [dense_kernel(self.get(f"{at}/dense/kernel"))], at)
            _assign(
                head.batch_norm_layers[index],
                batch_norm_weights(self, f"{at}/bn_relu/bn", head.batch_norm_layers[index]),
                at,
            )

    def assign_linear(self, layer, input_width):
        """Gives a `Dense` layer the supervised head's kernel and bias."""
        at = "supervised_head/linear_layer/dense"
        kernel = self.get(f"{at}/kernel")
        if kernel.shape[0] != input_width:
            raise ValueError(
                f"The file's supervised head reads {kernel.shape[0]} features, "
                f"not the {input_width} of the layer it was given to: check "
                f"head_layers. Received: path={self.path!r}"
            )
        bias = np.zeros(kernel.shape[-1], "float32")
        if self.has(f"{at}/bias"):
            bias = self.get(f"{at}/bias")
        _assign(layer, [dense_kernel(kernel), bias], at)


def conv_kernel(value):
    """A convolution kernel of the file as keras_simclr's: both HWIO."""
    return value


def dense_kernel(value):
    """A dense kernel of the file as keras_simclr's: both `(in, out)`."""
    return value


def batch_norm_weights(checkpoint, prefix, layer):
    """The file's batch norm at `prefix` as `layer`'s weights: gamma,
    beta where the layer has a shift, moving mean, moving variance."""
    values = [checkpoint.get(f"{prefix}/gamma")]
    if layer.center:
        values.append(checkpoint.get(f"{prefix}/beta"))
    values.append(checkpoint.get(f"{prefix}/moving_mean"))
    values.append(checkpoint.get(f"{prefix}/moving_variance"))
    return values


def _assign(layer, values, name):
    weights = layer.weights
    if len(weights) != len(values) or any(
        tuple(w.shape) != tuple(np.shape(v)) for w, v in zip(weights, values)
    ):
        raise ValueError(
            f"The file's {name} does not fit layer {layer.name!r}: shapes "
            f"{[tuple(np.shape(v)) for v in values]} for "
            f"{[tuple(w.shape) for w in weights]}"
        )
    for weight, value in zip(weights, values):
        weight.assign(np.asarray(value, dtype=weight.dtype))


def _stem_layers(encoder):
    names = [layer.name for layer in encoder.layers]
    if "stem_conv3" in names:
        order = ["stem_conv1", "stem_bn1", "stem_conv2", "stem_bn2", "stem_conv3", "stem_bn"]
    else:
        order = ["stem_conv", "stem_bn"]
    return [encoder.get_layer(name) for name in order]


def _block_layers(encoder, prefix, block):
    """The convolutions and batch norms of a block in the file's order."""
    get = encoder.get_layer
    layers = [get(f"{prefix}_{name}") for name in ("conv1", "bn1", "conv2", "bn2")]
    if block == "basic":
        return layers
    names = [layer.name for layer in encoder.layers]
    if f"{prefix}_sk_mixing" in names:
        mixing = get(f"{prefix}_sk_mixing")
        layers += [mixing.reduce_conv, mixing.reduce_bn, mixing.expand_conv]
    return layers + [get(f"{prefix}_conv3"), get(f"{prefix}_bn3")]
