"""Models that run some of their layers without training them, without
setting `trainable = False` on those layers."""


class FrozenPartsMixin:
    """Leaves the variables of `_frozen_layers()` out of what this model trains.

    The classifier in linear mode and the distiller run layers they share
    with the models they were built from (the pretrainer's encoder, the
    teacher). Keras keeps `trainable` on the layers and on their variables,
    so `layer.trainable = False` here would freeze them in those other
    models too, for good. Instead, this model reports their variables as
    non-trainable in its own lists (`trainable_variables`,
    `non_trainable_variables` and the `*_weights` pair that the Keras
    trainers of every backend read to take gradients, build the optimizer
    and carry the state through a compiled step), and leaves the flags as
    they were. The subclass stops the gradient into those layers and runs
    them in inference mode.

    Put it first among the bases, before `keras.Model`.
    """

    def _frozen_layers(self):
        """The layers whose variables this model does not train."""
        return []

    def _frozen_variable_ids(self):
        ids = set()
        for layer in self._frozen_layers():
            ids.update(id(variable) for variable in layer.variables)
            if isinstance(layer, FrozenPartsMixin):
                ids.update(layer._frozen_variable_ids())
        for layer in self._nested_frozen_parts():
            ids.update(layer._frozen_variable_ids())
        return ids

    def _nested_frozen_parts(self):
        """Sublayers that are themselves `FrozenPartsMixin` models."""
        return []

    def _split(self, trainable):
        frozen = self._frozen_variable_ids()
        kept = [v for v in trainable if id(v) not in frozen]
        moved = [v for v in trainable if id(v) in frozen]
        return kept, moved

    @property
    def trainable_variables(self):
        return self._split(super().trainable_variables)[0]

    @property
    def non_trainable_variables(self):
        moved = self._split(super().trainable_variables)[1]
        return super().non_trainable_variables + moved

    @property
    def trainable_weights(self):
        return self._split(super().trainable_weights)[0]

    @property
    def non_trainable_weights(self):
        moved = self._split(super().trainable_weights)[1]
        return super().non_trainable_weights + moved
