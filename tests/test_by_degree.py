"""MAF's sequential direction by degree: TFP's D-pass values, gradients and refusals."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tensorflow_probability import bijectors as tfb

from flows_tf.bijectors.by_degree import check_by_degree, forward_by_degree, solve_by_degree
from flows_tf.bijectors.conditioners import MADEAffine
from flows_tf.bijectors.onepass import OnePassMAF


def made(d, hidden_units, dtype, seed=0, **kwargs):
    """A built MADE with random weights that respect its masks (output layer included)."""
    floatx = tf_keras.backend.floatx()
    tf_keras.backend.set_floatx(dtype.name)  # TFP's hidden Activation layers follow floatx
    try:
        tf.random.set_seed(seed)
        kwargs = {"activation": "relu", **kwargs}
        net = tfb.AutoregressiveNetwork(
            params=2, event_shape=[d], hidden_units=hidden_units, dtype=dtype, **kwargs
        )
        net(tf.zeros([1, d], dtype))
    finally:
        tf_keras.backend.set_floatx(floatx)
    rng = np.random.RandomState(seed)
    for v in net.trainable_variables:
        v.assign(0.4 * rng.standard_normal(v.shape))
        if v.constraint is not None:
            v.assign(v.constraint(v))
    return net


def pair(d, hidden_units, dtype, shift_side="data", sequential="by_degree"):
    """The same MAF layer twice: TFP's D full passes, and by degree."""
    affine = MADEAffine(made(d, hidden_units, dtype), shift_side=shift_side)
    return (
        tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=affine),
        OnePassMAF(shift_and_log_scale_fn=affine, sequential=sequential),
    )


SHAPES = [(1, [4]), (2, [8, 8]), (5, [8, 8]), (5, [3]), (6, [16, 7, 9]), (4, [])]


@pytest.mark.parametrize("shift_side", ["data", "noise"])
@pytest.mark.parametrize("d,hidden_units", SHAPES)
def test_forward_and_log_det_equal_tfps_d_passes(d, hidden_units, shift_side, dtype, tol):
    stock, ours = pair(d, hidden_units, dtype, shift_side)
    # two batch axes (TFP's MADE itself needs one when d = 1)
    u = tf.constant(np.random.RandomState(1).randn(*([3, 7] if d > 1 else [21]), d), dtype)
    rtol, atol = tol(1e-12, 1e-5), tol(1e-12, 1e-5)
    np.testing.assert_allclose(ours.forward(u), stock.forward(u), rtol=rtol, atol=atol)
    np.testing.assert_allclose(
        ours.forward_log_det_jacobian(u, event_ndims=1),
        stock.forward_log_det_jacobian(tf.identity(u), event_ndims=1),
        rtol=rtol,
        atol=atol,
    )
    y = ours.forward(u)  # and it is MAF's map: the (parallel) inverse takes it back
    np.testing.assert_allclose(ours.inverse(tf.identity(y)), u, rtol=0, atol=tol(1e-10, 1e-4))


@pytest.mark.parametrize("sequential", ["by_degree", "by_degree_implicit"])
@pytest.mark.parametrize("d,hidden_units", [(5, [8, 8]), (6, [16, 7, 9])])
def test_gradients_equal_tfps_on_every_unmasked_weight(d, hidden_units, sequential, dtype, tol):
    """Each weight the masks leave free gets TFP's gradient (masked ones have no effect)."""
    stock, ours = pair(d, hidden_units, dtype, sequential=sequential)
    u = tf.constant(np.random.RandomState(2).randn(16, d), dtype)
    network = ours.parameters["shift_and_log_scale_fn"].made
    variables = network.trainable_variables
    grads = []
    for bijector in (stock, ours):
        with tf.GradientTape() as tape:
            y = bijector.forward(tf.identity(u))
            loss = tf.reduce_sum(tf.sin(y)) + tf.reduce_sum(
                bijector.forward_log_det_jacobian(tf.identity(u), event_ndims=1)
            )
        grads.append(tape.gradient(loss, variables))
    for v, g_stock, g_ours in zip(variables, *grads, strict=True):
        mask = v.constraint(tf.ones_like(v)) if v.constraint is not None else tf.ones_like(v)
        np.testing.assert_allclose(
            g_ours * mask, g_stock * mask, rtol=tol(1e-10, 1e-4), atol=tol(1e-12, 1e-5)
        )
        assert np.any(g_ours.numpy() != 0)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("shift_side", ["data", "noise"])
@pytest.mark.parametrize("d,hidden_units", [(1, [4]), (5, [8, 8]), (6, [16, 7, 9]), (4, [])])
def test_implicit_gradients_equal_autodiff_through_the_walk(
    d, hidden_units, shift_side, jit_compile, dtype, tol
):
    """solve_by_degree's adjoint walk: the input's and every weight's gradient, exactly."""
    affine = MADEAffine(made(d, hidden_units, dtype, seed=3), shift_side=shift_side)
    rng = np.random.RandomState(4)
    u = tf.constant(rng.randn(*([3, 7] if d > 1 else [21]), d), dtype)
    weights = tf.constant(rng.randn(*u.shape), dtype)  # a loss that mixes every y_i
    variables = affine.made.trainable_variables

    def gradients(solve):
        with tf.GradientTape() as tape:
            tape.watch(u)
            y, log_det = solve(affine, u)
            loss = tf.reduce_sum(weights * tf.sin(y)) + tf.reduce_sum(tf.cos(log_det))
        found = tape.gradient(loss, [u, *variables])  # None: a weight the walk never reads
        pairs = zip(found, [u, *variables], strict=True)
        return [tf.zeros_like(v) if g is None else g for g, v in pairs]

    # under XLA the walk and the back-substitution both run as while loops
    implicit = tf.function(lambda: gradients(solve_by_degree), jit_compile=jit_compile)()
    grads = [[g.numpy() for g in gradients(forward_by_degree)], [g.numpy() for g in implicit]]
    for g_walk, g_implicit in zip(*grads, strict=True):
        np.testing.assert_allclose(g_implicit, g_walk, rtol=tol(1e-10, 1e-4), atol=tol(1e-12, 1e-5))
    assert np.any(grads[1][0] != 0) and any(np.any(g != 0) for g in grads[1][1:])


def test_implicit_gradient_inside_a_compiled_cond_equals_eager(dtype, tol):
    """Distillation switches losses with tf.cond inside compiled blocks: its gradient must trace."""
    affine = MADEAffine(made(5, [8, 8], dtype, seed=5))
    u = tf.constant(np.random.RandomState(6).randn(4, 5), dtype)
    variables = affine.made.trainable_variables

    def grads(switch: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = tf.cond(
                switch,
                lambda: tf.reduce_sum(solve_by_degree(affine, tf.identity(u))[0] ** 2),
                lambda: tf.reduce_sum(affine.made(u) ** 2),
            )
        return tape.gradient(loss, variables)

    for jit_compile in (False, True):
        compiled = tf.function(grads, jit_compile=jit_compile)(tf.constant(True))
        for g_compiled, g_eager in zip(compiled, grads(tf.constant(True)), strict=True):
            np.testing.assert_allclose(
                g_compiled, g_eager, rtol=tol(1e-10, 1e-4), atol=tol(1e-12, 1e-5)
            )


def test_the_walk_does_one_passs_arithmetic(dtype):
    """TFP's forward runs the MADE D times in a loop; the walk multiplies each weight once."""
    d, hidden_units = 6, [16, 16]
    stock, ours = pair(d, hidden_units, dtype)
    u = tf.zeros([4, d], dtype)
    graph = tf.function(ours.forward).get_concrete_function(u).graph
    assert not any(op.type in ("While", "StatelessWhile") for op in graph.get_operations())
    multiplied = sum(
        int(np.prod(op.inputs[1].shape)) for op in graph.get_operations() if op.type == "MatMul"
    )
    kernels = ours.parameters["shift_and_log_scale_fn"].made.trainable_variables[0::2]
    # the hidden and output kernels once each (the first kernel enters row by row, elementwise)
    assert multiplied == sum(int(np.prod(k.shape)) for k in kernels[1:])
    stock_graph = tf.function(stock.forward).get_concrete_function(u).graph
    assert any(op.type in ("While", "StatelessWhile") for op in stock_graph.get_operations())


@pytest.mark.parametrize("d,hidden_units", SHAPES)
def test_under_xla_the_walk_is_one_loop_with_the_unrolled_walks_values(d, hidden_units, dtype, tol):
    """XLA compiles a loop body once; graph mode keeps the unrolled walk, the faster there."""
    affine = MADEAffine(made(d, hidden_units, dtype, seed=7), shift_side="noise")
    u = tf.constant(np.random.RandomState(8).randn(*([3, 7] if d > 1 else [21]), d), dtype)
    y, log_det = forward_by_degree(affine, u)
    for jit_compile in (False, True):
        solve = tf.function(lambda u: solve_by_degree(affine, u), jit_compile=jit_compile)
        ops = solve.get_concrete_function(u).graph.get_operations()
        assert any(op.type in ("While", "StatelessWhile") for op in ops) == jit_compile
        y_solved, log_det_solved = solve(u)
        np.testing.assert_allclose(y_solved, y, rtol=tol(1e-12, 1e-5), atol=tol(1e-12, 1e-5))
        np.testing.assert_allclose(
            log_det_solved, log_det, rtol=tol(1e-12, 1e-5), atol=tol(1e-12, 1e-5)
        )


@pytest.mark.parametrize(
    "kwargs,problem",
    [
        ({"hidden_degrees": "random"}, "hidden_degrees='random'"),
        ({"input_order": "right-to-left"}, "input_order='right-to-left'"),
        ({"activation": "tanh"}, "activation='tanh'"),
    ],
)
def test_a_made_the_walk_cannot_follow_is_refused_by_name(kwargs, problem):
    net = made(4, [8], tf.float64, **kwargs)
    with pytest.raises(ValueError, match=problem):
        check_by_degree(net)
    with pytest.raises(ValueError, match=problem):
        OnePassMAF(shift_and_log_scale_fn=MADEAffine(net), sequential="by_degree")


def test_unknown_sequential_mode_and_foreign_conditioner_are_refused():
    with pytest.raises(ValueError, match="sequential must be one of"):
        OnePassMAF(shift_and_log_scale_fn=MADEAffine(made(3, [4], tf.float64)), sequential="fast")
    net = made(3, [4], tf.float64)
    with pytest.raises(ValueError, match="needs a MADEAffine"):
        OnePassMAF(shift_and_log_scale_fn=lambda x: (x, x), sequential="by_degree")
    OnePassMAF(shift_and_log_scale_fn=MADEAffine(net), sequential="by_degree")  # accepted
