import keras
import numpy as np
import pytest
from keras import ops

from keras_simclr.layers import ChannelsLastConv2D
from keras_simclr.layers import FusedBatchNormalization
from keras_simclr.layers import with_fast_layers


def test_with_fast_layers_copies_a_functional_encoder():
    
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.8)(x)
    inner = keras.Sequential(
        [keras.Input((4, 4, 8)), keras.layers.BatchNormalization(center=False)]
    )
    outputs = keras.layers.GlobalAveragePooling2D()(inner(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(7)
    images = rng.normal(size=(8, 6, 6, 3)).astype("float32")
    model(images, training=True)  # non-trivial moving statistics

    fused = with_fast_layers(model)

    def batch_norms(m):
        return [layer for layer in m._flatten_layers(include_self=False)
                if isinstance(layer, keras.layers.BatchNormalization)]

    assert [type(layer) for layer in batch_norms(fused)] == [
        FusedBatchNormalization] * 2
    assert [type(layer) for layer in fused.layers[:2]] == [
        keras.layers.InputLayer, ChannelsLastConv2D]
    assert [type(layer) for layer in batch_norms(model)] == [
        keras.layers.BatchNormalization] * 2
    assert batch_norms(fused)[0].momentum == 0.8
    assert not batch_norms(fused)[1].center
    for training in (False, True):
        np.testing.assert_allclose(
            ops.convert_to_numpy(fused(images, training=training)),
            ops.convert_to_numpy(model(images, training=training)),
            rtol=1e-5, atol=1e-5,
        )
    # The copy's variables are its own: training it leaves the original alone.
    assert all(w1 is not w2 for w1, w2 in zip(fused.weights, model.weights))
    before = [ops.convert_to_numpy(w) for w in model.weights]
    fused(images * 2.0 + 1.0, training=True)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(ops.convert_to_numpy(new), old)


def test_with_fast_layers_refuses_a_subclassed_model():
    
    class Encoder(keras.Model):
        def __init__(self):
            super().__init__()
            self.norm = keras.layers.BatchNormalization()

        def call(self, x):
            return self.norm(x)

    with pytest.raises(ValueError, match="subclassed.*Received: model of type Encoder"):
        with_fast_layers(Encoder())
