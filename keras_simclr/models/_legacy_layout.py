"""Loading `.keras` files written before objectives were classes.

Those files hold the objective's arguments in the pretrainer's config
(`objective="byol", temperature=0.1, momentum=0.996, ...`) and its networks
and state as the pretrainer's own: the prediction head and the momentum
copies in the pretrainer's layer list, the state variables (EMA step
count, queue, running correlation) at the end of the pretrainer's own
variables. Today the objective is a layer of the pretrainer that owns them,
so the same weights lie at other paths. `load` reads them from where they
were.
"""

import keras

from keras_simclr import _keras_compat
from keras_simclr import objectives
from keras_simclr.objectives._arguments import (
    DEPRECATED_ARGUMENTS as _OBJECTIVE_ARGUMENTS,
)

# The order in which the old pretrainer tracked the objective's layers; the
# pretrainer arguments that belonged to objectives are `_OBJECTIVE_ARGUMENTS`.
_OBJECTIVE_LAYERS = ("prediction_head", "target_encoder", "target_projection_head")


def objective_arguments_from_config(config):
    """Replaces an old config's objective key and arguments by the
    objective, keeping the arguments it takes (old files hold every
    argument, the unused ones at their defaults)."""
    cls = objectives.OBJECTIVES[config.pop("objective", "simclr")]
    arguments = dict(config.pop("objective_config", None) or {})
    accepted = objectives.arguments(cls)
    given = {name: config.pop(name, None) for name in _OBJECTIVE_ARGUMENTS}
    conditions = getattr(cls, "conditional_arguments", {})
    for name, value in given.items():
        if value is None or name not in accepted:
            continue
        if name in conditions and not given.get(conditions[name]):
            continue
        if name == "prediction_head":
            value = keras.saving.deserialize_keras_object(value)
        arguments[name] = value
    config["objective"] = cls(**arguments)


def load(model, store):
    """Loads the pretrainer's own entry of an old file, and points the
    store at the old paths of the objective's layers.

    `store` is the file's weights store, on which Keras then loads every
    layer's weights by path: its `get` is wrapped to translate the paths.
    """
    objective = model.objective
    state = _keras_compat.own_variables(objective)
    values = [store[str(i)] for i in range(len(store.keys()))]
    if len(values) < len(state):
        raise ValueError(
            "This file's pretrainer holds fewer variables than its objective's "
            f"state needs. Received: {len(values)} variables for "
            f"{len(state)} of objective={objective.name!r}"
        )
    for variable, value in zip(state, values[len(values) - len(state):]):
        variable.assign(value)
    objective._state_loaded = True
    translate = _path_translation(model)
    get = store.get
    store.get = lambda path: get(translate(path))


def _container_names(layers):
    """The names Keras gives a list of layers in a file: the class name in
    snake case, numbered from the second of a class."""
    used, names = {}, {}
    for layer in layers:
        name = _keras_compat.to_snake_case(type(layer).__name__)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        names[id(layer)] = name
    return names


def _path_translation(model):
    objective = model.objective
    own = [getattr(objective, name, None) for name in _OBJECTIVE_LAYERS]
    own = [layer for layer in own if layer is not None]
    online = [model.encoder, model.augmentation, model.projection_head, model.probe]
    online = [layer for layer in online if layer is not None]
    old_names = _container_names(own + online)
    new_names = _container_names(model.layers)
    prefixes = {
        f"layers/{new_names[id(layer)]}": f"layers/{old_names[id(layer)]}"
        for layer in online
    }
    for name in _OBJECTIVE_LAYERS:
        layer = getattr(objective, name, None)
        if layer is not None:
            prefixes[f"layers/{new_names[id(objective)]}/{name}"] = (
                f"layers/{old_names[id(layer)]}"
            )
    ordered = sorted(prefixes, key=len, reverse=True)

    def translate(path):
        for prefix in ordered:
            if path == prefix or path.startswith(prefix + "/"):
                return prefixes[prefix] + path[len(prefix):]
        return path

    return translate
