"""Conv2D that runs channels-last images on PyTorch without copying them."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_simclr")
class ChannelsLastConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` without the layout copies of the PyTorch backend.

    On PyTorch, Keras 3 turns a channels-last image batch into a
    channels-first contiguous copy before every convolution, then copies it
    again into PyTorch's `channels_last` memory format for oneDNN, and the
    backward pass copies the gradients back the same way (docs/speed.md
    gives their share of a ResNet-18 step on a CPU). Yet a channels-last
    tensor seen through a `(0, 3, 1, 2)` permutation already *is* an NCHW
    tensor in `channels_last` memory format, so this layer hands that view to
    `torch.nn.functional.conv2d` and permutes the result back, copying
    nothing. On the other backends, and for what the fast path does not
    cover, it is Keras's `Conv2D`: the same arguments, weights, config and
    results.

    The fast path covers channels-last data, `groups=1`, and `"valid"`
    padding or `"same"` padding that is symmetric (stride 1 and odd
    dilated kernel sizes), as in the ResNets of this library.

    It takes the arguments of `keras.layers.Conv2D`.

    Example:

    ```python
    conv = keras_simclr.layers.ChannelsLastConv2D(64, 3, padding="same")
    y = conv(keras.random.normal((8, 32, 32, 3)))  # (8, 32, 32, 64)
    ```
    """

    def call(self, inputs):
        padding = self._torch_padding()
        if (
            keras.backend.backend() != "torch"
            or padding is None
            or getattr(self, "lora_enabled", False)
            or getattr(self, "quantization_mode", None)
        ):
            return super().call(inputs)
        import torch.nn.functional as F

        outputs = F.conv2d(
            inputs.permute(0, 3, 1, 2),
            ops.convert_to_tensor(self.kernel).permute(3, 2, 0, 1),
            None if self.bias is None else ops.convert_to_tensor(self.bias),
            stride=self.strides,
            padding=padding,
            dilation=self.dilation_rate,
        ).permute(0, 2, 3, 1)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _torch_padding(self):
        """PyTorch's `padding` argument of the fast path, or None."""
        if self.data_format != "channels_last" or self.groups != 1:
            return None
        if self.padding == "valid":
            return 0
        if self.padding != "same" or any(s != 1 for s in self.strides):
            return None
        sizes = [
            (k - 1) * d for k, d in zip(self.kernel_size, self.dilation_rate)
        ]
        if any(size % 2 for size in sizes):
            return None
        return tuple(size // 2 for size in sizes)
