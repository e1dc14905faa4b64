"""The cached-gradient forward pass of `SimCLRPretrainer(gradient_chunk_size=...)`:
the whole batch's objective and exact gradient, holding the activations of
one chunk of views at a time (gradient caching, Gao et al., 2021, "Scaling
Deep Contrastive Learning Batch Size under Memory Limited Setup";
docs/design.md, decision 25).

Each backend's Keras trainer still runs the step: it calls the pretrainer,
computes the loss of its outputs and differentiates it. Only the
pretrainer's training forward pass changes:

1. The `2N` views are split into chunks (`chunk_rows`) and each chunk is
   encoded with no gradient kept (`no_gradient`): the outputs of the whole
   batch, at the activation memory of one chunk. Batch norm normalises each
   chunk by the chunk's own statistics and updates its moving statistics
   once per chunk. The values of the variables the encoding reads are
   recorded before each chunk (`snapshot`).
2. The outputs go through one operation (`cached`) whose forward pass is
   the identity. The objective then computes the loss of the whole batch
   from them, exactly as without chunks (across replicas too).
3. In the backward pass that operation receives the loss's gradient with
   respect to every output of the batch (the cache), and for each chunk in
   turn encodes it again, with gradient, from the variables' values recorded
   for it (so batch statistics and any random draw are those of step 1),
   back-propagates the chunk's slice of the cache into the trainable
   variables and adds the result. One chunk's activations are alive at a
   time; the sum is the whole batch's gradient.

The cost is one more forward pass of the networks (docs/benchmarks.md gives
the memory and time measured).

Chunks. Image `i` of the batch belongs to block `i % n` of the `n` blocks;
chunk `c` holds the first views of block `c` and the second views of block
`(c + 1) % n`. So the two views of an image never share a chunk, and so
never share batch statistics, as MoCo's shuffled batch norm arranges
(He et al., 2020, Section 3.3): with per-chunk statistics the model cannot
find an image's positive by the statistics it was normalised with, the
leak SimCLR's Section 3 warns of. Blocks taken by stride need no static
batch size (TensorFlow's relaxed traces have none).

Several devices. A chunk holds `gradient_chunk_size` images on each device,
and each device splits its own share of the batch by the rule above
(`devices_in_one_call`: under the JAX distribution API one call sees the
global batch). The loss gathers the outputs of every replica, so the
cache each replica receives is the gradient of the global loss, and
encoding again is local; the trainers sum the replicas' gradients as
without chunks. Under the JAX distribution API each chunk keeps the
batch's sharding (`shard_like_the_batch`).
"""

import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_simclr import _graph_checks
from keras_simclr import _keras_compat
from keras_simclr import distribute


def devices_in_one_call(model):
    """The devices that share the batch one call of `model` sees in a step:
    the data-parallel devices under the JAX distribution API, whose step is
    one program over the global batch; 1 for a `tf.distribute` replica or a
    `torch.distributed` process, which each see their own slice.
    `gradient_chunk_size` counts the images of a chunk on each device."""
    return max(
        1,
        distribute.num_data_parallel_devices(model)
        // distribute.num_replicas_in_sync(model),
    )


def shard_like_the_batch(tensor):
    """`tensor` (a chunk of views) sharded over the devices as the batch is,
    under the JAX distribution API: each device then encodes its own share
    of every chunk, rather than XLA gathering the chunk onto every device.
    Elsewhere, and where the rows do not split evenly, `tensor` itself."""
    if keras.backend.backend() != "jax":
        return tensor
    distribution = keras.distribution.distribution()
    if distribution is None:
        return tensor
    shards = distribute.num_data_parallel_devices()
    if shards < 2 or tensor.shape[0] is None or tensor.shape[0] % shards:
        return tensor
    layout = distribution.get_data_layout(tensor.shape)
    return keras.distribution.distribute_tensor(tensor, layout)


def warn_about_accumulation(model):
    """Warns, in one line, that Keras's gradient accumulation changes an
    objective that couples the images of a batch."""
    steps = getattr(getattr(model, "optimizer", None), "gradient_accumulation_steps", None)
    if not steps or steps < 2 or not model.objective.couples_images:
        return
    warnings.warn(
        f"gradient_accumulation_steps={steps} on the optimizer changes the "
        f"objective: {type(model.objective).__name__} computes each batch's "
        "loss from that batch's images alone (its negatives, its statistics), "
        f"so {steps} accumulated batches are not one batch {steps} times "
        "larger; for the larger batch's objective in the memory of a smaller "
        "one, give the larger batch_size and "
        "SimCLRPretrainer(gradient_chunk_size=...) instead.",
        UserWarning,
        stacklevel=4,
    )


def num_chunks(num_images, chunk_size):
    """The chunks of a batch of `num_images` images: `ceil(N / chunk_size)`."""
    return max(1, math.ceil(num_images / chunk_size))


def check_enough_images(num_images, count):
    """`num_images`, a scalar tensor of a TensorFlow step traced without a
    static batch, after an assertion that the batch fills `count` chunks
    (`_graph_checks` turns its failure into a `ValueError`)."""
    import tensorflow as tf

    check = _graph_checks.assertion(
        num_images >= count,
        f"A batch holds fewer images than the {count} chunks that "
        "gradient_chunk_size makes of fit()'s batch, so a chunk would be "
        "empty: give a dataset whose last batch holds at least "
        f"{count} images (batch(..., drop_remainder=True) drops a short "
        "one). Received: ",
        [("images", num_images)],
    )
    with tf.control_dependencies([check]):
        return tf.identity(num_images)


def chunk_rows(num_images, count):
    """The rows of each chunk in the `2N` views (first all first views, then
    all second views): chunk `c` is the first views of the images `i` with
    `i % count == c` and the second views of those with
    `i % count == (c + 1) % count`. `num_images` may be a scalar tensor."""
    rows = []
    for c in range(count):
        if isinstance(num_images, int):
            # Constants, known when the step is traced.
            first = np.arange(c, num_images, count, dtype="int32")
            second = np.arange((c + 1) % count, num_images, count, dtype="int32")
            rows.append(
                ops.convert_to_tensor(np.concatenate([first, second + num_images]))
            )
            continue
        first = ops.arange(c, num_images, count, dtype="int32")
        second = ops.arange((c + 1) % count, num_images, count, dtype="int32")
        rows.append(ops.concatenate([first, second + num_images], axis=0))
    return rows


def assemble(chunk_outputs, rows):
    """The chunks' outputs (dicts) as the outputs of the `2N` views in
    order."""
    inverse = ops.argsort(ops.concatenate(rows, axis=0))
    return {
        key: ops.take(
            ops.concatenate([outputs[key] for outputs in chunk_outputs], axis=0),
            inverse,
            axis=0,
        )
        for key in chunk_outputs[0]
    }


def values(variables):
    """The values the step reads for `variables`, in their own dtype (not
    cast to a mixed-precision compute dtype)."""
    with _keras_compat.autocast_off():
        current = [variable.value for variable in variables]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Read now, as tensors (TensorFlow's `value` is the variable).
        return [tf.convert_to_tensor(value) for value in current]
    return current


def snapshot(variables):
    """The variables' values now, kept as they are while the variables
    change."""
    current = values(variables)
    if keras.backend.backend() == "torch":
        # PyTorch assigns in place.
        return [value.detach().clone() for value in current]
    return current


class no_gradient:
    """A context in which the encoding keeps nothing for a backward pass
    (PyTorch's `no_grad`; TensorFlow and JAX drop it from `stop_gradient`
    on the outputs, which `stop` applies)."""

    def __enter__(self):
        self._torch = None
        if keras.backend.backend() == "torch":
            import torch

            self._torch = torch.no_grad()
            self._torch.__enter__()
        return self

    def __exit__(self, *args):
        if self._torch is not None:
            self._torch.__exit__(*args)


def after(tensor, previous):
    """`tensor`, computed on only once the tensors `previous` are: the
    chunks of the first pass one after another, not side by side (which
    TensorFlow's executor and XLA's scheduler would be free to do, holding
    the activations of several chunks). PyTorch runs eagerly, in order."""
    if not previous:
        return tensor
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.control_dependencies(previous):
            return tf.identity(tensor)
    if backend == "jax":
        import jax

        _, tensor = jax.lax.optimization_barrier((previous, tensor))
    return tensor


def stop(outputs):
    return {key: ops.stop_gradient(value) for key, value in outputs.items()}


def cached(outputs, encode, chunk_views, rows, trainable, params, stateful, snapshots):
    """`outputs` (a list of the batch's outputs, without gradient), whose
    gradient flows into `trainable` by encoding each chunk again.

    Args:
        outputs: the batch's outputs, each `(2N, ...)`.
        encode: `encode(views)` → the list of outputs of a chunk of views,
            in the order of `outputs`.
        chunk_views: the views of each chunk.
        rows: each chunk's rows in the `2N` views.
        trainable: the trainable variables; `params` their values as read
            by the step (the tensors the trainer differentiates).
        stateful: the other variables the encoding reads; `snapshots`,
            per chunk, their values when step 1 encoded it.
    """
    backend = keras.backend.backend()
    arguments = (outputs, encode, chunk_views, rows, trainable, params, stateful, snapshots)
    if backend == "tensorflow":
        return _tensorflow_cached(*arguments)
    if backend == "jax":
        return _jax_cached(*arguments)
    if backend == "torch":
        return _torch_cached(*arguments)
    raise ValueError(
        "gradient_chunk_size needs the TensorFlow, JAX or PyTorch backend. "
        f"Received: backend={backend!r}"
    )


def _encode_chunk(encode, views, trainable, params, stateful, snapshot_values):
    """`encode(views)` with the variables read as `params` and
    `snapshot_values`; the assignments it makes (moving statistics) are
    dropped: step 1 made them."""
    mapping = list(zip(trainable, params)) + list(zip(stateful, snapshot_values))
    with keras.StatelessScope(state_mapping=mapping):
        return encode(views)


def _tensorflow_cached(outputs, encode, chunk_views, rows, trainable, params, stateful, snapshots):
    import tensorflow as tf

    count = len(outputs)

    @tf.custom_gradient
    def identity(*tensors):
        given_params = list(tensors[count:])

        def gradient(*cache):
            total = [tf.zeros_like(p) for p in given_params]
            for c, views in enumerate(chunk_views):
                # One chunk after another: chunk c is encoded again only
                # once the gradients of chunk c - 1 are summed.
                with tf.control_dependencies(total):
                    views = tf.identity(views)
                with tf.GradientTape() as tape:
                    tape.watch(given_params)
                    chunk_outputs = _encode_chunk(
                        encode, views, trainable, given_params, stateful, snapshots[c]
                    )
                pairs = [
                    (o, tf.cast(tf.gather(g, rows[c]), o.dtype))
                    for o, g in zip(chunk_outputs, cache)
                    if g is not None
                ]
                grads = tape.gradient(
                    [o for o, _ in pairs],
                    given_params,
                    output_gradients=[g for _, g in pairs],
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
                total = [t + tf.cast(g, t.dtype) for t, g in zip(total, grads)]
            return [None] * count + total

        return [tf.identity(t) for t in tensors[:count]], gradient

    return identity(*outputs, *params)


def _jax_cached(outputs, encode, chunk_views, rows, trainable, params, stateful, snapshots):
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def identity(outputs, params, chunk_views, snapshots):
        return outputs

    def forward(outputs, params, chunk_views, snapshots):
        return outputs, (params, chunk_views, snapshots)

    def backward(residuals, cache):
        params, chunk_views, snapshots = residuals
        total = [jnp.zeros_like(p) for p in params]
        for c, views in enumerate(chunk_views):
            if c:
                # One chunk after another: XLA may not start encoding chunk
                # c before the gradients of chunk c - 1 are summed.
                total, views = jax.lax.optimization_barrier((total, views))

            def encode_chunk(chunk_params):
                return _encode_chunk(
                    encode, views, trainable, chunk_params, stateful, snapshots[c]
                )

            chunk_outputs, pullback = jax.vjp(encode_chunk, params)
            (grads,) = pullback(
                [
                    jnp.take(g, rows[c], axis=0).astype(o.dtype)
                    for g, o in zip(cache, chunk_outputs)
                ]
            )
            total = [t + g.astype(t.dtype) for t, g in zip(total, grads)]
        return (None, total, None, None)

    identity.defvjp(forward, backward)
    return identity(list(outputs), list(params), list(chunk_views), snapshots)


def _torch_cached(outputs, encode, chunk_views, rows, trainable, params, stateful, snapshots):
    import torch

    count = len(outputs)

    class Cached(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            return tuple(t.view_as(t) for t in tensors[:count])

        @staticmethod
        def backward(ctx, *cache):
            wanted = [p for p in params if p.requires_grad]
            total = [torch.zeros_like(p) for p in wanted]
            with torch.enable_grad():
                for c, views in enumerate(chunk_views):
                    mapping = list(zip(stateful, snapshots[c]))
                    with keras.StatelessScope(state_mapping=mapping):
                        chunk_outputs = encode(views)
                    pairs = [
                        (o, g.index_select(0, rows[c]).to(o.dtype))
                        for o, g in zip(chunk_outputs, cache)
                        if o.requires_grad and g is not None
                    ]
                    if not pairs:
                        continue
                    grads = torch.autograd.grad(
                        [o for o, _ in pairs],
                        wanted,
                        grad_outputs=[g for _, g in pairs],
                        allow_unused=True,
                    )
                    for t, g in zip(total, grads):
                        if g is not None:
                            t.add_(g.to(t.dtype))
            grads = iter(total)
            return (None,) * count + tuple(
                next(grads) if p.requires_grad else None for p in params
            )

    return list(Cached.apply(*outputs, *params))
