"""Each objective is wired to the right tensors inside the training step.

For every objective, the loss that `fit()` logs for a step on fixed views is
recomputed from the model's own sub-networks (encoder, projection head,
prediction head, momentum target, queue, running correlation) with the public
loss function of `keras_simclr.losses`, and must equal it (for several, also
with an independent NumPy formula). Plausible wrong wirings (SupCon without
its labels, BYOL with the online projections as targets, MoCo with queries
and keys swapped, the queue read after its update, ...) are recomputed too
and must NOT match: the tolerance discriminates.

The state an objective keeps must advance as its paper says: the momentum
target by its EMA (with the online weights taken before the optimizer's
update, and BYOL's cosine schedule of `m`), MoCo's and SimCLR v2's queue by
this step's normalised target keys (all first views, then all second views),
UniGrad's correlation by its running average.

The optimizer is `SGD(0.0)` where the recomputation reads the online weights
after the step: they are then the weights the step used. The target moves
only at the start of a step (before its forward pass), so after the step it
holds the weights that step's forward pass read.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_simclr
from tests.testing import tiny_encoder
from keras_simclr import losses
from keras_simclr import objectives
from keras_simclr.models import SimCLRPretrainer

N = 8
QUEUE_SIZE = 24  # > 2N, so the queue keeps part of its past after a step.
MOMENTUM = 0.9
RTOL = 1e-5
ATOL = 1e-6
# A wrong wiring must miss the logged loss by more than this.
WRONG_GAP = 1e-3
MEMORY = "simclr_memory"  # SimCLR v2: NT-Xent with a queue of target keys.
CASES = [
    "simclr",
    MEMORY,
    "supcon",
    "moco",
    "byol",
    "simsiam",
    "barlow_twins",
    "vicreg",
    "unigrad",
]
MOMENTUM_CASES = ["moco", "byol", "unigrad", MEMORY]
QUEUE_CASES = ["moco", MEMORY]
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1], "int32")


# === Model and data ===


def make_objective(case, momentum=MOMENTUM, momentum_schedule_steps=None):
    momentum_kwargs = {
        "momentum": momentum,
        "momentum_schedule_steps": momentum_schedule_steps,
    }
    if case == "simclr":
        return objectives.SimCLR(temperature=0.5)
    if case == MEMORY:
        return objectives.SimCLR(
            temperature=0.5, memory_queue=True, queue_size=QUEUE_SIZE, **momentum_kwargs
        )
    if case == "supcon":
        return objectives.SupCon(temperature=0.5)
    if case == "moco":
        return objectives.MoCo(
            temperature=0.2, queue_size=QUEUE_SIZE, **momentum_kwargs
        )
    if case == "byol":
        return objectives.BYOL(
            prediction_head=keras_simclr.layers.PredictionHead(hidden_dim=8),
            **momentum_kwargs,
        )
    if case == "simsiam":
        return objectives.SimSiam(
            prediction_head=keras_simclr.layers.PredictionHead(hidden_dim=8)
        )
    if case == "barlow_twins":
        # Larger than the paper's 5e-3, so the off-diagonal term weighs.
        return objectives.BarlowTwins(lambda_offdiag=0.05)
    if case == "vicreg":
        return objectives.VICReg()
    if case == "unigrad":
        # rho well below 1, so the running average visibly mixes.
        return objectives.UniGrad(lambda_=10.0, rho=0.8, **momentum_kwargs)
    raise AssertionError(case)


def make_model(case, learning_rate=0.0, **objective_kwargs):
    model = SimCLRPretrainer(
        encoder=tiny_encoder(),
        augmentation=None,
        projection_head=keras_simclr.layers.ProjectionHead(hidden_dim=8, output_dim=6),
        objective=make_objective(case, **objective_kwargs),
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    model.build({"view_a": (None, 8, 8, 3), "view_b": (None, 8, 8, 3)})
    return model


def batch(step):
    """Fixed views in [0, 255]: view_b is a noisy copy of view_a."""
    rng = np.random.default_rng(100 + step)
    view_a = rng.uniform(0.0, 255.0, (N, 8, 8, 3))
    view_b = np.clip(view_a + rng.normal(0.0, 60.0, view_a.shape), 0.0, 255.0)
    return {"view_a": view_a.astype("float32"), "view_b": view_b.astype("float32")}


def perturb_target(model, scale=0.2):
    """Moves the target away from the online network, so that anything
    reading one for the other shows."""
    rng = np.random.default_rng(7)
    for _, target in model.objective.target_pairs():
        value = ops.convert_to_numpy(target)
        target.assign(value + scale * rng.normal(size=value.shape).astype("float32"))


def numpy_of(variables):
    return [np.array(ops.convert_to_numpy(v), dtype="float32") for v in variables]


def loss_key(case):
    if case in ("simclr", MEMORY):
        return "contrastive_loss"
    return f"{case}_loss"


def fit_step(model, case, x):
    """One training step through `fit()`; returns its logs (floats)."""
    y = LABELS if case == "supcon" else None
    history = model.fit(x, y, batch_size=N, epochs=1, shuffle=False, verbose=0)
    return {name: float(values[-1]) for name, values in history.history.items()}


# === Recomputation from the model's own sub-networks ===


def tensor(array):
    return ops.convert_to_tensor(np.asarray(array, "float32"))


def value(x):
    return float(ops.convert_to_numpy(x))


def normalize(x):
    x = np.asarray(x, "float64")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def halves(x):
    return x[:N], x[N:]


def forward(model, x, training=True):
    """The step's tensors, recomputed as NumPy from the model's networks."""
    views = tensor(np.concatenate([x["view_a"], x["view_b"]], axis=0))
    objective = model.objective
    features = model.encoder(views, training=training)
    projection = model.projection_head(features, training=training)
    parts = {
        "features": ops.convert_to_numpy(features),
        "z": ops.convert_to_numpy(projection),
    }
    if getattr(objective, "prediction_head", None) is not None:
        parts["p"] = ops.convert_to_numpy(
            objective.prediction_head(projection, training=training)
        )
    if getattr(objective, "target_encoder", None) is not None:
        target = objective.target_projection_head(
            objective.target_encoder(views, training=training), training=training
        )
        parts["t"] = ops.convert_to_numpy(target)
    return parts


def state_of(model):
    """What a step reads of the objective's state, before it."""
    objective = model.objective
    state = {}
    if getattr(objective, "queue", None) is not None:
        state["queue"] = numpy_of([objective.queue])[0]
    if getattr(objective, "correlation", None) is not None:
        state["correlation"] = numpy_of([objective.correlation])[0]
        state["initialized"] = value(objective.correlation_initialized) > 0.5
    return state


def unigrad_correlation_for(model, t, state):
    t_a, t_b = halves(t)
    batch_correlation = losses.unigrad_correlation(tensor(t_a), tensor(t_b))
    return losses.update_correlation(
        tensor(state["correlation"]),
        batch_correlation,
        state["initialized"],
        rho=model.objective.rho,
    )


def public_loss(case, model, parts, state, labels=LABELS):
    """The step's loss by the public loss function, rightly wired."""
    objective = model.objective
    z_a, z_b = (tensor(h) for h in halves(parts["z"]))
    if case == "simclr":
        return value(losses.nt_xent(z_a, z_b, temperature=objective.temperature))
    if case == MEMORY:
        return value(
            losses.nt_xent(
                z_a, z_b, temperature=objective.temperature,
                negatives=tensor(state["queue"]),
            )
        )
    if case == "supcon":
        return value(
            losses.supervised_contrastive(
                z_a, z_b, None if labels is None else ops.convert_to_tensor(labels),
                temperature=objective.temperature,
            )
        )
    if case == "moco":
        k_a, k_b = (tensor(h) for h in halves(parts["t"]))
        queue = tensor(state["queue"])
        t = objective.temperature
        return value(
            0.5 * (
                losses.moco_infonce(z_a, k_b, queue, temperature=t)
                + losses.moco_infonce(z_b, k_a, queue, temperature=t)
            )
        )
    if case == "byol":
        return value(losses.byol(tensor(parts["p"]), tensor(parts["t"])))
    if case == "simsiam":
        return value(losses.simsiam(tensor(parts["p"]), tensor(parts["z"])))
    if case == "barlow_twins":
        return value(
            losses.barlow_twins(z_a, z_b, lambda_offdiag=objective.lambda_offdiag)
        )
    if case == "vicreg":
        return value(
            losses.vicreg(
                z_a, z_b,
                invariance_weight=objective.invariance_weight,
                variance_weight=objective.variance_weight,
                covariance_weight=objective.covariance_weight,
            )
        )
    if case == "unigrad":
        t_a, t_b = (tensor(h) for h in halves(parts["t"]))
        correlation = unigrad_correlation_for(model, parts["t"], state)
        return value(
            losses.unigrad(z_a, z_b, t_a, t_b, correlation, lambda_=objective.lambda_)
        )
    raise AssertionError(case)


# --- Independent NumPy formulas ---


def numpy_nt_xent(z, temperature, negatives=None):
    z = normalize(z)
    two_n = len(z)
    logits = z @ z.T / temperature
    logits[np.arange(two_n), np.arange(two_n)] = -np.inf
    positives = logits[np.arange(two_n), (np.arange(two_n) + two_n // 2) % two_n]
    if negatives is not None:
        logits = np.concatenate([logits, z @ normalize(negatives).T / temperature], 1)
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(lse - positives))


def numpy_supcon(z, labels, temperature):
    z = normalize(z)
    two_n = len(z)
    labels = np.concatenate([labels, labels])
    logits = z @ z.T / temperature
    others = ~np.eye(two_n, dtype=bool)
    total = 0.0
    for i in range(two_n):
        row = logits[i, others[i]]
        lse = np.log(np.exp(row - row.max()).sum()) + row.max()
        positives = others[i] & (labels == labels[i])
        total += np.mean(lse - logits[i, positives])
    return total / two_n


def numpy_moco(q, k, queue, temperature):
    q, k = normalize(q), normalize(k)
    logits = np.concatenate(
        [np.sum(q * k, axis=1, keepdims=True), q @ queue.T], axis=1
    ) / temperature
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(lse - logits[:, 0]))


def numpy_byol(p, t):
    p_a, p_b = halves(normalize(p))
    t_a, t_b = halves(normalize(t))
    return float(
        np.mean(2 - 2 * np.sum(p_a * t_b, 1)) + np.mean(2 - 2 * np.sum(p_b * t_a, 1))
    )


def numpy_simsiam(p, z):
    p_a, p_b = halves(normalize(p))
    z_a, z_b = halves(normalize(z))
    return float(
        -0.5 * (np.mean(np.sum(p_a * z_b, 1)) + np.mean(np.sum(p_b * z_a, 1)))
    )


def numpy_correlation(t):
    t_a, t_b = halves(normalize(t))
    return (t_a.T @ t_a + t_b.T @ t_b) / (2 * N)


def numpy_unigrad(z, t, correlation, lambda_):
    z_a, z_b = halves(normalize(z))
    t_a, t_b = halves(normalize(t))
    grad_a = -t_b + lambda_ * z_a @ correlation
    grad_b = -t_a + lambda_ * z_b @ correlation
    return float(
        0.5 * (np.mean(np.sum(grad_a * z_a, 1)) + np.mean(np.sum(grad_b * z_b, 1)))
    )


def numpy_loss(case, model, parts, state):
    """The NumPy formula where the test has one, else None."""
    objective = model.objective
    if case == "simclr":
        return numpy_nt_xent(parts["z"], objective.temperature)
    if case == MEMORY:
        return numpy_nt_xent(parts["z"], objective.temperature, state["queue"])
    if case == "supcon":
        return numpy_supcon(parts["z"], LABELS, objective.temperature)
    if case == "moco":
        z_a, z_b = halves(parts["z"])
        k_a, k_b = halves(parts["t"])
        t = objective.temperature
        return 0.5 * (
            numpy_moco(z_a, k_b, state["queue"], t)
            + numpy_moco(z_b, k_a, state["queue"], t)
        )
    if case == "byol":
        return numpy_byol(parts["p"], parts["t"])
    if case == "simsiam":
        return numpy_simsiam(parts["p"], parts["z"])
    if case == "unigrad":
        batch_correlation = numpy_correlation(parts["t"])
        if state["initialized"]:
            rho = objective.rho
            correlation = rho * state["correlation"] + (1 - rho) * batch_correlation
        else:
            correlation = batch_correlation
        return numpy_unigrad(parts["z"], parts["t"], correlation, objective.lambda_)
    return None


# --- Wrong wirings, which the test must tell apart ---


def rolled(x):
    """Each image's second half paired with the next image's: wrong
    positives."""
    a, b = halves(x)
    return np.concatenate([a, np.roll(b, 1, axis=0)], axis=0)


def same_view(x):
    """The halves swapped: each view paired with itself."""
    a, b = halves(x)
    return np.concatenate([b, a], axis=0)


def wrong_losses(case, model, parts, state, state_after, inference_parts):
    """{description: loss} of plausible mis-wirings of the step."""
    objective = model.objective
    wrong = {
        "batch norm in inference mode": public_loss(
            case, model, inference_parts, state
        ),
    }
    if case not in ("byol", "moco", "unigrad", "simsiam"):
        # (these pair the halves through other tensors, below)
        wrong["mismatched positives"] = public_loss(
            case, model, {**parts, "z": rolled(parts["z"])}, state
        )
    if case == MEMORY:
        wrong["no queue negatives"] = public_loss("simclr", model, parts, state)
        wrong["queue read after its update"] = public_loss(
            case, model, parts, state_after
        )
    if case == "supcon":
        wrong["labels ignored"] = public_loss(case, model, parts, state, labels=None)
        wrong["labels shuffled"] = public_loss(
            case, model, parts, state, labels=np.roll(LABELS, 1)
        )
    if case == "moco":
        q_a, q_b = (tensor(h) for h in halves(parts["z"]))
        k_a, k_b = (tensor(h) for h in halves(parts["t"]))
        queue, t = tensor(state["queue"]), objective.temperature
        wrong["queries and keys swapped"] = value(
            0.5 * (
                losses.moco_infonce(k_a, q_b, queue, temperature=t)
                + losses.moco_infonce(k_b, q_a, queue, temperature=t)
            )
        )
        wrong["online projections as keys"] = public_loss(
            case, model, {**parts, "t": parts["z"]}, state
        )
        wrong["key of the same view"] = value(
            0.5 * (
                losses.moco_infonce(q_a, k_a, queue, temperature=t)
                + losses.moco_infonce(q_b, k_b, queue, temperature=t)
            )
        )
        wrong["queue read after its update"] = public_loss(
            case, model, parts, state_after
        )
        wrong["mismatched positives"] = public_loss(
            case, model, {**parts, "t": rolled(parts["t"])}, state
        )
    if case == "byol":
        wrong["online projections as targets"] = public_loss(
            case, model, {**parts, "t": parts["z"]}, state
        )
        wrong["projections instead of predictions"] = public_loss(
            case, model, {**parts, "p": parts["z"]}, state
        )
        wrong["target of the same view"] = public_loss(
            case, model, {**parts, "t": same_view(parts["t"])}, state
        )
        wrong["mismatched positives"] = public_loss(
            case, model, {**parts, "t": rolled(parts["t"])}, state
        )
    if case == "simsiam":
        wrong["projections instead of predictions"] = public_loss(
            case, model, {**parts, "p": parts["z"]}, state
        )
        wrong["projection of the same view"] = public_loss(
            case, model, {**parts, "z": same_view(parts["z"])}, state
        )
        wrong["mismatched positives"] = public_loss(
            case, model, {**parts, "z": rolled(parts["z"])}, state
        )
    if case == "barlow_twins":
        z_a, z_b = (tensor(h) for h in halves(parts["features"]))
        wrong["encoder features instead of projections"] = value(
            losses.barlow_twins(z_a, z_b, lambda_offdiag=objective.lambda_offdiag)
        )
    if case == "unigrad":
        wrong["online projections as targets"] = public_loss(
            case, model, {**parts, "t": parts["z"]}, state
        )
        wrong["correlation not updated by this batch"] = value(
            losses.unigrad(
                *(tensor(h) for h in halves(parts["z"])),
                *(tensor(h) for h in halves(parts["t"])),
                tensor(state["correlation"]),
                lambda_=objective.lambda_,
            )
        )
        if state["initialized"]:
            # (at the first step updating the batch's own F changes nothing)
            wrong["correlation updated twice"] = public_loss(
                case, model, parts, state_after
            )
        wrong["mismatched positives"] = public_loss(
            case, model, {**parts, "t": rolled(parts["t"])}, state
        )
    return wrong


# === Tests ===


@pytest.mark.parametrize("case", CASES)
def test_logged_loss_is_the_public_loss_of_the_models_own_networks(case):
    """Two steps (the second reads the state the first left: a queue of
    keys, a running correlation); each step's logged loss must equal the
    public loss function applied to the model's own networks, rightly
    wired, and differ from every wrong wiring by more than `WRONG_GAP`."""
    model = make_model(case)
    if case in MOMENTUM_CASES:
        perturb_target(model)
    for step in range(2):
        x = batch(step)
        state = state_of(model)
        logs = fit_step(model, case, x)
        logged = logs[loss_key(case)]
        # No probe: the total is the objective's loss.
        np.testing.assert_allclose(logs["loss"], logged, rtol=RTOL, atol=ATOL)

        parts = forward(model, x)
        expected = public_loss(case, model, parts, state)
        np.testing.assert_allclose(
            logged, expected, rtol=RTOL, atol=ATOL,
            err_msg=f"{case}, step {step}: logged loss != public loss recomputed",
        )
        formula = numpy_loss(case, model, parts, state)
        if formula is not None:
            np.testing.assert_allclose(
                logged, formula, rtol=RTOL, atol=ATOL,
                err_msg=f"{case}, step {step}: logged loss != NumPy formula",
            )

        # A wrong wiring misses by far more than the tolerance.
        gap = max(WRONG_GAP, 10 * (ATOL + RTOL * abs(logged)))
        wrong = wrong_losses(
            case, model, parts, state, state_of(model),
            forward(model, x, training=False),
        )
        for description, loss in wrong.items():
            assert np.isfinite(loss), (case, step, description, loss)
            assert abs(loss - logged) > gap, (
                f"{case}, step {step}: the wrong wiring '{description}' gives "
                f"{loss}, as the logged {logged}: the test cannot tell it apart"
            )


@pytest.mark.parametrize("case", QUEUE_CASES)
def test_queue_holds_this_steps_target_keys(case):
    """After a step the queue's front `2N` rows are the L2-normalised target
    projections of [view_a; view_b] of that step, and the rest is the old
    queue's head."""
    model = make_model(case)
    perturb_target(model)
    for step in range(2):
        x = batch(step)
        before = state_of(model)["queue"]
        fit_step(model, case, x)
        after = state_of(model)["queue"]
        parts = forward(model, x)
        keys = normalize(parts["t"])
        np.testing.assert_allclose(after[: 2 * N], keys, rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(after[2 * N :], before[: QUEUE_SIZE - 2 * N])
        np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, rtol=RTOL)
        # Not the online projections (queries), nor the views' other order.
        assert np.abs(after[: 2 * N] - normalize(parts["z"])).max() > WRONG_GAP
        swapped = np.concatenate([keys[N:], keys[:N]])
        assert np.abs(after[: 2 * N] - swapped).max() > WRONG_GAP


def ema_expected(momentum, target_before, online_before):
    return [
        momentum * t + (1.0 - momentum) * o
        for t, o in zip(target_before, online_before)
    ]


def assert_ema(model, momentum, target_before, online_before, online_after):
    target_after = numpy_of(t for _, t in model.objective.target_pairs())
    for (_, variable), got, want in zip(
        model.objective.target_pairs(),
        target_after,
        ema_expected(momentum, target_before, online_before),
    ):
        np.testing.assert_allclose(
            got, want, rtol=RTOL, atol=ATOL, err_msg=variable.path
        )
    # The test can tell the formula from its mix-ups: the online weights
    # after the optimizer's update, the coefficients swapped, no move.
    mix_ups = {
        "online after the update": ema_expected(momentum, target_before, online_after),
        "target not moved": target_before,
    }
    if abs(momentum - 0.5) > 0.05:  # (at 0.5 swapping m and 1 - m changes nothing)
        mix_ups["m and 1 - m swapped"] = ema_expected(
            1.0 - momentum, target_before, online_before
        )
    for description, wrong in mix_ups.items():
        gap = max(np.abs(g - w).max() for g, w in zip(target_after, wrong))
        assert gap > 1e-4, description


@pytest.mark.parametrize("case", MOMENTUM_CASES)
def test_target_follows_its_ema(case):
    """Before each step's forward pass, target <- m target + (1 - m) online,
    online as it was before that step's optimizer update; with
    `momentum_schedule_steps` the step's `m` is BYOL's cosine
    1 - (1 - m0) (cos(pi k / K) + 1) / 2 of the updates `k` so far (of
    `k - 1` for BYOL, whose code moves the target after the step: see
    `test_byol_target_follows_the_official_schedule`)."""
    base, total = 0.5, 4
    model = make_model(
        case, learning_rate=0.5, momentum=base, momentum_schedule_steps=total
    )
    perturb_target(model)
    objective = model.objective
    assert len(objective.target_pairs()) == len(
        model.encoder.trainable_weights + model.projection_head.trainable_weights
    )
    for step in range(3):
        online_before = numpy_of(o for o, _ in objective.target_pairs())
        target_before = numpy_of(t for _, t in objective.target_pairs())
        k = max(step - 1, 0) if case == "byol" else step
        momentum = 1.0 - (1.0 - base) * (np.cos(np.pi * k / total) + 1.0) / 2.0
        np.testing.assert_allclose(
            value(objective.target_momentum()), momentum, rtol=1e-6
        )
        fit_step(model, case, batch(step))
        online_after = numpy_of(o for o, _ in objective.target_pairs())
        assert_ema(model, momentum, target_before, online_before, online_after)
        assert value(objective.target_updates) == step + 1


def official_byol_tau(k, base, total):
    """BYOL's `schedules.target_ema` at `global_step = k`: 1 - (1 - base)
    (cos(pi min(k, K) / K) + 1) / 2."""
    k = min(k, total)
    return 1.0 - (1.0 - base) * (np.cos(np.pi * k / total) + 1.0) / 2.0


def test_byol_target_follows_the_official_schedule():
    """BYOL's `_update_fn` at `global_step = k` updates the online weights,
    then `target <- tau_k target + (1 - tau_k) online_(k + 1)`, the online
    weights after the update; step `k + 1` reads that target. Here the
    target moves before step `k + 1`: it must be the same, with `tau_k`,
    not `tau_(k + 1)`, at every step, past the schedule's end too."""
    base, total = 0.5, 3
    model = make_model(
        "byol", learning_rate=0.5, momentum=base, momentum_schedule_steps=total
    )
    perturb_target(model)
    objective = model.objective
    fit_step(model, "byol", batch(0))
    for k in range(5):
        # After step k: the official code's target and online weights.
        target = numpy_of(t for _, t in objective.target_pairs())
        online = numpy_of(o for o, _ in objective.target_pairs())
        tau = official_byol_tau(k, base, total)
        np.testing.assert_allclose(
            value(objective.target_momentum()), tau, rtol=1e-6
        )
        fit_step(model, "byol", batch(k + 1))
        online_after = numpy_of(o for o, _ in objective.target_pairs())
        if tau == 1.0:
            # Past the schedule's end the target stays where it is.
            for got, want in zip(
                numpy_of(t for _, t in objective.target_pairs()), target
            ):
                np.testing.assert_array_equal(got, want)
            continue
        assert_ema(model, tau, target, online, online_after)
        if k + 1 < total:
            # One step later (the schedule at k + 1) misses.
            later = official_byol_tau(k + 1, base, total)
            got = numpy_of(t for _, t in objective.target_pairs())
            wrong = ema_expected(later, target, online)
            assert max(np.abs(g - w).max() for g, w in zip(got, wrong)) > 1e-4


def test_constant_momentum_ema():
    """Without a schedule `m` stays `momentum` at every step."""
    model = make_model("byol", learning_rate=0.5, momentum=MOMENTUM)
    perturb_target(model)
    objective = model.objective
    for step in range(2):
        online_before = numpy_of(o for o, _ in objective.target_pairs())
        target_before = numpy_of(t for _, t in objective.target_pairs())
        fit_step(model, "byol", batch(step))
        online_after = numpy_of(o for o, _ in objective.target_pairs())
        assert_ema(model, MOMENTUM, target_before, online_before, online_after)


def test_unigrad_correlation_follows_its_running_average():
    """First step: F = (t_a^T t_a + t_b^T t_b) / 2N of the normalised target
    projections; then F = rho F + (1 - rho) F_batch."""
    model = make_model("unigrad")
    perturb_target(model)
    objective = model.objective
    assert value(objective.correlation_initialized) == 0.0
    previous = None
    for step in range(3):
        x = batch(step)
        fit_step(model, "unigrad", x)
        batch_correlation = numpy_correlation(forward(model, x)["t"])
        correlation = numpy_of([objective.correlation])[0]
        if previous is None:
            expected = batch_correlation
        else:
            rho = objective.rho
            expected = rho * previous + (1 - rho) * batch_correlation
            # Neither the batch's alone nor the previous one kept.
            assert np.abs(correlation - batch_correlation).max() > 1e-4
            assert np.abs(correlation - previous).max() > 1e-4
        np.testing.assert_allclose(correlation, expected, rtol=RTOL, atol=ATOL)
        # Not the online projections' correlation.
        online = numpy_correlation(forward(model, x)["z"])
        assert np.abs(batch_correlation - online).max() > 1e-4
        assert value(objective.correlation_initialized) == 1.0
        previous = correlation


def test_unigrad_logs_its_official_positive_similarity():
    """UniGrad's `positive_similarity` is its official code's `pos_sim`,
    0.5 * (mean cos(z_a, t_b) + mean cos(z_b, t_a)): each view's online
    projection against the other view's target (NumPy, from the model's own
    networks), not the two online projections."""
    model = make_model("unigrad")
    perturb_target(model)
    for step in range(2):
        x = batch(step)
        logs = fit_step(model, "unigrad", x)
        parts = forward(model, x)
        z_a, z_b = halves(normalize(parts["z"]))
        t_a, t_b = halves(normalize(parts["t"]))
        expected = 0.5 * (
            np.mean(np.sum(z_a * t_b, axis=-1))
            + np.mean(np.sum(z_b * t_a, axis=-1))
        )
        np.testing.assert_allclose(
            logs["positive_similarity"], expected, rtol=RTOL, atol=ATOL
        )
        wrong = {
            "online against online": np.mean(np.sum(z_a * z_b, axis=-1)),
            "online against the same view's target": 0.5 * (
                np.mean(np.sum(z_a * t_a, axis=-1))
                + np.mean(np.sum(z_b * t_b, axis=-1))
            ),
        }
        for description, value in wrong.items():
            assert abs(value - expected) > WRONG_GAP, description
