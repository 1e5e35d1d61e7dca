"""Export and import of functions: kiln's format round trips (every op in the op tables),
transforms of imported functions, files written by the real MLX imported into kiln, and
corrupt files."""
from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
import test_conv
import test_fast
import test_ops_elementwise
import test_ops_products
import test_ops_reduce
import test_ops_shape
from harness import OpCase, make_inputs, mlx_core, needs_mlx

import kiln.core as mx
from kiln.export import kilnfmt

OP_CASES = [c for mod in (test_ops_elementwise, test_ops_reduce, test_ops_shape, test_ops_products,
                          test_conv, test_fast)
            for c in mod.CASES]


def _flat(out):
    if isinstance(out, mx.array):
        return [out]
    res = []
    for o in out:
        res.extend(_flat(o))
    return res


def _assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


# ---------------------------------------------------------------- kiln round trips
@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c.name)
def test_round_trip_every_op(case: OpCase, tmp_path):
    xs = [mx.array(x) for x in make_inputs(case)]

    def fun(*a):
        return _flat(case.fn(mx, *a))

    path = tmp_path / "f.kfn"
    mx.export_function(str(path), fun, *xs)
    imported = mx.import_function(str(path))
    got = imported(*xs)
    assert isinstance(got, tuple)
    _assert_same(list(got), fun(*xs))
    # Other values of the same signature: the trace is not frozen on the examples.
    ys = [mx.array(x) for x in make_inputs(case, seed=1)]
    _assert_same(list(imported(*ys)), fun(*ys))


def test_keywords_trees_and_signatures(tmp_path):
    path = str(tmp_path / "f.kfn")

    def f(x, y, z=None):
        return (x * y, x - z) if z is not None else x + y

    a, b = mx.array([1.0, 2.0]), mx.array([3.0, 4.0])
    with mx.exporter(path, f) as ex:
        ex(a, b)
        ex([a, b], {"z": b})
        ex(mx.array([1, 2, 3]), mx.array([1, 1, 1]))
    g = mx.import_function(path)
    _assert_same(list(g(a, b)), [a + b])
    _assert_same(list(g(a, b, z=b)), [a * b, a - b])
    _assert_same(list(g((a, b), {"z": b})), [a * b, a - b])
    _assert_same(list(g(mx.array([4, 5, 6]), mx.array([1, 1, 1]))), [mx.array([5, 6, 7])])
    with pytest.raises(ValueError, match="No imported function found"):
        g(a)
    with pytest.raises(RuntimeError, match="closed"):
        ex(a, b)


@needs_mlx
@pytest.mark.parametrize("variant", ["shape", "dtype", "count"])
def test_no_matching_signature_message_is_mlx_s(variant, tmp_path):
    def f(x, y):
        return x + y

    calls = {"shape": ((np.ones((2, 3), np.float32), np.ones(3, np.float32)), {}),
             "dtype": ((np.ones((2, 3), np.float32), np.ones((2, 3), np.int32)), {}),
             "count": ((np.ones((2, 3), np.float32),), {})}
    args, kwargs = calls[variant]
    msgs = []
    for m in (mx, mlx_core):
        p = str(tmp_path / f"{m.__name__}.fn")
        m.export_function(p, f, m.array(np.ones((2, 3), np.float32)), m.array(np.ones((2, 3), np.float32)))
        g = m.import_function(p)
        with pytest.raises(ValueError) as e:
            g(*[m.array(a) for a in args], **{k: m.array(v) for k, v in kwargs.items()})
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]


def test_constants_shared_between_traces(tmp_path):
    path = str(tmp_path / "f.kfn")
    c = mx.zeros((64, 256))
    mx.eval(c)
    with mx.exporter(path, lambda *a: c + sum(a)) as ex:
        for k in range(4):
            ex(*[mx.array(1.0)] * k)
    assert os.path.getsize(path) < c.nbytes + 8192
    g = mx.import_function(path)
    np.testing.assert_array_equal(np.asarray(g(mx.array(2.0), mx.array(3.0))[0]), np.full((64, 256), 5.0))


def test_metadata_and_bad_metadata(tmp_path):
    path = str(tmp_path / "f.kfn")
    mx.export_function(path, mx.abs, mx.array([1.0]), metadata='{"a": 1}')
    _, md = mx.import_function(path, return_metadata=True)
    assert md == '{"a": 1}'
    with pytest.raises(TypeError):
        mx.export_function(path, mx.abs, mx.array([1.0]), metadata={"a": 1})
    with pytest.raises(ValueError):
        mx.export_function(lambda d: None, mx.abs, mx.array([1.0]), metadata="x")


def test_shapeless_export(tmp_path):
    path = str(tmp_path / "f.kfn")

    def f(x, w):
        return mx.tanh(x @ w) + 1.0

    x, w = mx.ones((2, 5, 4)), mx.ones((4, 3))
    mx.export_function(path, f, x, w, shapeless=True)
    g = mx.import_function(path)
    for n in (5, 9, 1):
        xi = mx.random.normal((2, n, 4))
        _assert_same(list(g(xi, w)), [f(xi, w)])
    with pytest.raises(ValueError, match="No imported function found"):
        g(mx.ones((5, 4)), w)  # other rank


def test_random_state_is_a_constant(tmp_path):
    path = str(tmp_path / "f.kfn")
    mx.random.seed(3)
    mx.export_function(path, lambda: mx.random.uniform(shape=(4,)))
    mx.random.seed(3)
    want = mx.random.uniform(shape=(4,))
    _assert_same(list(mx.import_function(path)()), [want])


def test_in_place_update_inside_exported_function(tmp_path):
    path = str(tmp_path / "f.kfn")

    def f(x, y):
        out = x
        out += y
        return out

    x, y = mx.array([1, 2]), mx.array([3, 4])
    mx.export_function(path, f, x, y)
    _assert_same(list(mx.import_function(path)(x, y)), [mx.array([4, 6])])
    _assert_same([x], [mx.array([1, 2])])  # the example array was not touched


def test_outputs_that_are_inputs_or_constants_are_new_arrays(tmp_path):
    path = str(tmp_path / "f.kfn")
    c = mx.array([1.0, 2.0])
    mx.export_function(path, lambda x: (x, c), mx.zeros(2))
    g = mx.import_function(path)
    x = mx.array([5.0, 6.0])
    a, b = g(x)
    a += 1
    b += 1
    _assert_same(list(g(x)), [mx.array([5.0, 6.0]), mx.array([1.0, 2.0])])
    _assert_same([x], [mx.array([5.0, 6.0])])


def test_bad_inputs_and_outputs(tmp_path):
    path = str(tmp_path / "f.kfn")
    with pytest.raises(ValueError, match="Inputs can either"):
        mx.export_function(path, lambda x: x, "hi")
    with pytest.raises(ValueError, match="Inputs can either"):
        mx.export_function(path, lambda x: x, [[mx.array(1.0)]])
    with pytest.raises(ValueError, match="Outputs can be either"):
        mx.export_function(path, lambda: (mx.zeros(2), 1))
    with pytest.raises(ValueError, match="Outputs can be either"):
        mx.export_function(path, lambda: {"a": mx.zeros(2)})


def test_compiled_and_custom_functions_inside_export(tmp_path):
    path = str(tmp_path / "f.kfn")

    @mx.custom_function
    def h(x):
        return mx.sin(x) * 2

    @h.vjp
    def h_vjp(primals, cot, out):
        return cot

    inner = mx.compile(lambda x: mx.exp(x) + 1)

    def f(x):
        return h(inner(x))

    x = mx.array([0.1, 0.2])
    mx.export_function(path, f, x)
    _assert_same(list(mx.import_function(path)(x)), [f(x)])


def test_export_to_dot():
    a = mx.array([1.0, 2.0])
    q, r = mx.divmod(a * 3, mx.array(2.0))
    buf = io.StringIO()
    mx.export_to_dot(buf, q, r)
    text = buf.getvalue()
    assert text.startswith("digraph") and "DivMod" in text and "Multiply" in text


def _cb_fn(m):
    return lambda x, y: (m.log(m.abs(x - y)).astype(m.int32), m.sum(x, axis=0, keepdims=True),
                         m.log2(x) * m.sqrt(y))


@needs_mlx
def test_callback_matches_mlx():
    events = {}
    for m in (mx, mlx_core):
        ev = []
        m.export_function(ev.append, _cb_fn(m), m.array([1.0, 3.0]), y=m.array([2.0, 1.0]))
        events[m.__name__] = [(e["type"], e.get("name"), [str(a).rsplit(".", 1)[-1] for a in e.get("arguments", [])],
                               [(n, tuple(s), str(d).rsplit(".", 1)[-1]) for n, s, d in e.get("inputs", [])])
                              for e in ev if e["type"] != "keyword_inputs"]
        kw = [e for e in ev if e["type"] == "keyword_inputs"][0]["keywords"]
        assert kw == [("y", "B")]
    assert events["kiln.core"] == events["mlx.core"]


# ---------------------------------------------------------------- transforms of imported functions
def _model(x, w):
    return mx.sum(mx.tanh(x @ w) * mx.exp(-x[:, :1]))


@pytest.fixture
def imported_model(tmp_path):
    x = mx.array(np.random.default_rng(0).standard_normal((3, 4)))
    w = mx.array(np.random.default_rng(1).standard_normal((4, 2)))
    path = str(tmp_path / "m.kfn")
    mx.export_function(path, _model, x, w)
    g = mx.import_function(path)
    return (lambda a, b: g(a, b)[0]), x, w


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_grad_of_imported(imported_model):
    g, x, w = imported_model
    for argnums in (0, 1, (0, 1)):
        got = mx.grad(g, argnums=argnums)(x, w)
        want = mx.grad(_model, argnums=argnums)(x, w)
        for a, b in zip(got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want]):
            _close(a, b)
    # second order
    _close(mx.grad(lambda a: mx.sum(mx.grad(g)(a, w) ** 2))(x),
           mx.grad(lambda a: mx.sum(mx.grad(_model)(a, w) ** 2))(x))


def test_vjp_jvp_of_imported(imported_model):
    g, x, w = imported_model
    t = mx.ones_like(x)
    _close(mx.jvp(g, [x, w], [t, mx.zeros_like(w)])[1][0], mx.jvp(_model, [x, w], [t, mx.zeros_like(w)])[1][0])
    _close(mx.vjp(g, [x, w], [mx.array(2.0)])[1][1], mx.vjp(_model, [x, w], [mx.array(2.0)])[1][1])


def test_vmap_and_compile_of_imported(imported_model, tmp_path):
    g, x, w = imported_model
    xs = mx.stack([x, 2 * x, -x])
    _close(mx.vmap(g, in_axes=(0, None))(xs, w), mx.stack([_model(v, w) for v in (x, 2 * x, -x)]))
    _close(mx.compile(g)(x, w), _model(x, w))
    _close(mx.compile(mx.grad(g))(x, w), mx.grad(_model)(x, w))


# ---------------------------------------------------------------- functions exported by the real MLX
def _ms(m):
    X = m.array(np.arange(1, 13, dtype=np.float32).reshape(3, 4) / 7)
    idx = m.array(np.array([[0, 2, 1, 0], [1, 0, 2, 2]], np.int32))
    return X, idx


# fn(m, x, idx) written for both namespaces; each uses the named MLX primitive(s).
MLX_CASES = {
    "unary": lambda m, x, i: [f(x) for f in (m.abs, m.sin, m.cos, m.tan, m.exp, m.expm1, m.log, m.log2,
                                              m.log10, m.log1p, m.sqrt, m.rsqrt, m.square, m.sigmoid,
                                              m.tanh, m.sinh, m.cosh, m.arcsin, m.arctan, m.arcsinh,
                                              m.erf, m.floor, m.ceil, m.round, m.negative, m.sign)]
    + [m.arccos(x / 3), m.arctanh(x / 3), m.arccosh(x + 1), m.erfinv(x / 3)],
    "binary": lambda m, x, i: [f(x, x[::-1] + 0.5) for f in (m.add, m.subtract, m.multiply, m.divide,
                                                             m.power, m.maximum, m.minimum, m.remainder,
                                                             m.floor_divide, m.logaddexp, m.arctan2)],
    "compare": lambda m, x, i: [f(x, 0.9) for f in (m.equal, m.not_equal, m.less, m.less_equal, m.greater,
                                                     m.greater_equal)]
    + [m.logical_and(x > 0.5, x < 1.2), m.logical_or(x > 1.5, x < 0.3), m.logical_not(x > 1),
       m.isclose(x, x, equal_nan=True), m.where(x > 1, x, -x)],
    "bitwise": lambda m, x, i: [f(i, 3) for f in (m.bitwise_and, m.bitwise_or, m.bitwise_xor,
                                                   m.left_shift, m.right_shift)],
    "divmod": lambda m, x, i: list(m.divmod(x, 0.3)),
    "casts": lambda m, x, i: [x.astype(d) for d in (m.int32, m.int16, m.uint8, m.bfloat16, m.float16,
                                                    m.bool_, m.int64, m.uint32)] + [x.view(m.int32)],
    "reduce": lambda m, x, i: [m.sum(x, 1), m.prod(x, 0), m.max(x), m.min(x, 1, keepdims=True),
                               m.mean(x, 0), m.var(x), m.all(x > 0.2, 0), m.any(x > 1.5, 1),
                               m.argmax(x, 1), m.argmin(x, 0), m.logsumexp(x, 1)],
    "scan": lambda m, x, i: [m.cumsum(x, 1), m.cumsum(x, 0, reverse=True, inclusive=False),
                             m.cumprod(x, 1), m.cummax(x, 0), m.cummin(x, 1, reverse=True)],
    "softmax": lambda m, x, i: [m.softmax(x, -1), m.softmax(x, 0, precise=True)],
    "sort": lambda m, x, i: [m.sort(x, 0), m.argsort(x, 1), m.partition(x, 2, 1),
                             m.argpartition(x, 1, 0), m.topk(x, 2, 1),
                             m.searchsorted(m.sort(x[0]), x, side="right"), m.searchsorted(x[1], x[0])],
    "shape": lambda m, x, i: [m.reshape(x, (2, -1)), x.T, m.transpose(x[None], (2, 0, 1)),
                              m.broadcast_to(x, (2, 3, 4)), m.squeeze(x[None], 0), m.expand_dims(x, (0, 2)),
                              m.flatten(x[None]), m.unflatten(x, 1, (2, 2)), m.moveaxis(x, 0, 1),
                              m.concatenate([x, x * 2], 1), m.stack([x, x], 0), *m.split(x, [1, 3], 1),
                              m.pad(x, ((1, 0), (2, 1)), constant_values=0.5), m.tile(x, (1, 2)),
                              m.repeat(x, 2, 0), m.tril(x, -1), m.triu(x, 1), m.diagonal(x),
                              m.as_strided(x, (2, 2), (4, 1), 1)],
    "slices": lambda m, x, i: [x[1:3, ::2], x[::-1, 1:], x[:, ::-2], x[..., 2], x[None, 1]],
    "index": lambda m, x, i: [x[i[0]], x[:, i[1]], x[i[0, :2], i[1, :2]], m.take(x, i, axis=1),
                              m.take(x, i), m.take_along_axis(x, i % 3, axis=0)],
    "scatter": lambda m, x, i: [x.at[i[0]].add(1.0), x.at[i[1, :3]].multiply(2.0),
                                x.at[i[0]].maximum(0.9), x.at[i[0]].minimum(0.5),
                                m.put_along_axis(x, i % 3, m.array(9.0), axis=0),
                                x.at[1:3].add(x[:2])],
    "dynamic": lambda m, x, i: [m.slice(x, i[1, :1], (0,), (1, 4)),
                                m.slice_update(x, m.ones((1, 4)), i[1, :1], (0,))],
    "matmul": lambda m, x, i: [x @ x.T, m.addmm(m.ones((3, 3)), x, x.T, alpha=0.5, beta=2.0),
                               m.einsum("ij,kj->ik", x, x), m.tensordot(x, x, ([1], [1])),
                               m.outer(x[0], x[1]), m.inner(x, x),
                               m.gather_mm(x[None], m.ones((2, 4, 2)), rhs_indices=m.array([1])),
                               m.gather_mm(m.stack([x, 2 * x]), m.ones((2, 4, 2)), lhs_indices=m.array([1, 0]),
                                           rhs_indices=m.array([0, 1]), sorted_indices=False)],
    "creation": lambda m, x, i: [x + m.arange(4.0), x * m.ones((3, 4)), x + m.full((4,), 2.0), m.eye(3) @ x,
                                 x + m.linspace(0, 1, 4)],
    "conv": lambda m, x, i: [m.conv1d(x[None], m.ones((2, 3, 4)) / 5, stride=2, padding=1),
                             m.conv2d(x[None, :, :, None], m.ones((2, 2, 2, 1)), padding=(1, 0)),
                             m.conv_transpose1d(x[None], m.ones((2, 3, 4)), stride=2),
                             m.conv_general(x[None, :, :, None], m.ones((2, 2, 2, 1)), stride=1,
                                            padding=([1, 0], [0, 1]), kernel_dilation=2, flip=True)],
    "fft": lambda m, x, i: [m.abs(m.fft.fft(x, axis=1)), m.real(m.fft.rfft(x, n=6, axis=0)),
                            m.fft.irfft(m.fft.rfft(x), axis=1), m.imag(m.fft.ifftn(x.astype(m.complex64))),
                            m.abs(m.fft.fft2(x, norm="ortho"))],
    "random": lambda m, x, i: [x + m.random.uniform(shape=(3, 4), key=m.random.key(4)),
                               m.random.normal(shape=(2,), key=m.random.key(2)),
                               m.random.randint(0, 10, (5,), key=m.random.key(1)),
                               m.random.split(m.random.key(5))],
    "fast": lambda m, x, i: [m.fast.rms_norm(x, m.ones(4), 1e-5), m.fast.layer_norm(x, m.ones(4), None, 1e-5),
                             m.fast.rope(x[None], 4, traditional=False, base=10000.0, scale=1.0, offset=1),
                             m.fast.scaled_dot_product_attention(x[None, None], x[None, None], x[None, None],
                                                                 scale=0.5)],
    "linalg": lambda m, x, i: [m.linalg.inv(x[:, :3] + m.eye(3) * 3, stream=m.cpu),
                               m.linalg.cholesky(x[:, :3] @ x[:, :3].T + m.eye(3), stream=m.cpu),
                               m.linalg.qr(x, stream=m.cpu)[1].abs(), m.linalg.svd(x, compute_uv=False, stream=m.cpu),
                               m.linalg.eigvalsh(x[:, :3] @ x[:, :3].T, stream=m.cpu),
                               m.linalg.norm(x), m.linalg.cross(x[:, :3], x[:, 1:])],
    "more": lambda m, x, i: [m.hadamard_transform(m.concatenate([x, x], 1), scale=0.25),
                             m.linalg.eigh(x[:, :3] @ x[:, :3].T, stream=m.cpu)[0],
                             m.abs(m.linalg.eigh(x[:, :3] @ x[:, :3].T, UPLO="U", stream=m.cpu)[1]),
                             m.linalg.svd(x, stream=m.cpu)[1], m.conjugate(x.astype(m.complex64)),
                             m.real(m.linalg.eigvals(x[:, :3] @ x[:, :3].T + m.eye(3), stream=m.cpu)),
                             *m.depends([x * 2], [x + 1]), _set_rows(x, i[0, :2])],
    "nn": lambda m, x, i: [m.maximum(x, 0) * m.sigmoid(x), m.clip(x, 0.2, 0.9), m.nan_to_num(m.log(x - 1)),
                           m.stop_gradient(x) * 2, m.isnan(x), m.isinf(x / 0)],
}


def _set_rows(x, idx):
    y = x * 1
    y[idx] = 5.0
    return y


def _mlx_export(name, tmp_path, shapeless=False):
    fn = MLX_CASES[name]
    X, I = _ms(mlx_core)
    path = str(tmp_path / f"{name}.mlxfn")
    mlx_core.export_function(path, lambda x, i: fn(mlx_core, x, i), X, I, shapeless=shapeless)
    outs = fn(mlx_core, X, I)
    # NumPy cannot take MLX's bfloat16 buffers directly
    return path, [np.array(o.astype(mlx_core.float32)) if o.dtype == mlx_core.bfloat16 else np.array(o)
                  for o in outs]


@needs_mlx
@pytest.mark.parametrize("name", sorted(MLX_CASES))
def test_mlx_exported_functions_run_on_kiln(name, tmp_path):
    path, want = _mlx_export(name, tmp_path)
    g = mx.import_function(path)
    assert g.format == "mlx"
    X, I = _ms(mx)
    got = g(X, I)
    assert len(got) == len(want)
    kiln_direct = _flat(MLX_CASES[name](mx, X, I))
    for k, (a, w, d) in enumerate(zip(got, want, kiln_direct)):
        a = np.asarray(a)
        assert a.shape == w.shape, (k, a.shape, w.shape)
        assert a.dtype == w.dtype or str(a.dtype) == "bfloat16", (k, a.dtype, w.dtype)
        np.testing.assert_allclose(a.astype(np.float64) if a.dtype.kind != "c" else a,
                                   w.astype(np.float64) if w.dtype.kind != "c" else w,
                                   rtol=2e-5, atol=2e-5, err_msg=f"{name} output {k}")
        np.testing.assert_array_equal(a.shape, np.asarray(d).shape)


@needs_mlx
def test_mlx_multi_trace_kwargs_shapeless_metadata(tmp_path):
    path = str(tmp_path / "multi.mlxfn")

    def f(x, y, z=None):
        out = x + y
        return out * z if z is not None else out

    with mlx_core.exporter(path, f, shapeless=True, metadata="meta!") as ex:
        ex(mlx_core.array([1.0, 2.0]), mlx_core.array([3.0, 4.0]))
        ex(mlx_core.array([1.0, 2.0]), mlx_core.array([3.0, 4.0]), z=mlx_core.array([2.0, 2.0]))
    g, md = mx.import_function(path, return_metadata=True)
    assert md == "meta!" and g.shapeless
    a, b = mx.array([1.0, 2.0, 3.0]), mx.array([1.0, 1.0, 1.0])
    _assert_same(list(g(a, b)), [a + b])
    _assert_same(list(g(a, b, z=b * 3)), [(a + b) * 3])


@needs_mlx
def test_mlx_shapeless_means_and_slices(tmp_path):
    path = str(tmp_path / "s.mlxfn")

    def f(m):
        return lambda x: [m.mean(x, axis=1), m.var(x), x.reshape(-1), m.softmax(x, -1),
                          m.fast.layer_norm(x, m.ones(x.shape[-1:]), m.zeros(x.shape[-1:]), 1e-5)]

    mlx_core.export_function(path, f(mlx_core), mlx_core.ones((3, 4)), shapeless=True)
    g = mx.import_function(path)
    for shape in ((3, 4), (5, 4), (2, 4)):
        x = np.random.default_rng(shape[0]).standard_normal(shape).astype(np.float32)
        for a, w in zip(g(mx.array(x)), f(mx)(mx.array(x))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(w), rtol=1e-5, atol=1e-5)
    # Slices record absolute bounds: like MLX's own import, other shapes are refused.
    mlx_core.export_function(path, lambda x: x[:, 1:] - x[:, :-1], mlx_core.ones((3, 4)), shapeless=True)
    g = mx.import_function(path)
    _assert_same(list(g(mx.ones((3, 4)))), [mx.zeros((3, 3))])
    with pytest.raises(ValueError, match="cannot infer output shapes"):
        g(mx.ones((5, 4)))


@needs_mlx
def test_mlx_constants_shared_between_traces(tmp_path):
    path = str(tmp_path / "c.mlxfn")
    c = mlx_core.array(np.arange(2048, dtype=np.float32).reshape(8, 256))
    mlx_core.eval(c)
    with mlx_core.exporter(path, lambda *a: c * 2 + sum(a)) as ex:
        for k in range(4):
            ex(*[mlx_core.array(1.0)] * k)
    g = mx.import_function(path)
    for k in range(4):
        np.testing.assert_array_equal(np.asarray(g(*[mx.array(3.0)] * k)[0]), np.array(c) * 2 + 3.0 * k)


@needs_mlx
def test_mlx_shapeless_conv_and_matmul(tmp_path):
    path = str(tmp_path / "conv.mlxfn")
    w = mlx_core.array(np.random.default_rng(0).standard_normal((4, 3, 3)).astype(np.float32))

    def f(x):
        return mlx_core.conv1d(x, w, stride=2, padding=1) @ mlx_core.ones((4, 2))

    mlx_core.export_function(path, f, mlx_core.zeros((2, 16, 3)), shapeless=True)
    g = mx.import_function(path)
    for n in (16, 9, 33):
        x = np.random.default_rng(n).standard_normal((2, n, 3)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(g(mx.array(x))[0]), np.array(f(mlx_core.array(x))),
                                   rtol=1e-5, atol=1e-5)


@needs_mlx
def test_transforms_of_mlx_exported_function(tmp_path):
    path = str(tmp_path / "t.mlxfn")
    w = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)

    def f(m):
        return lambda x: m.sum(m.tanh(x @ m.array(w)) * m.exp(-x[:, :2]))

    x = mx.array(np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32))
    mlx_core.export_function(path, f(mlx_core), mlx_core.array(np.asarray(x)))
    imp = mx.import_function(path)
    g = lambda a: imp(a)[0]  # noqa: E731
    ref = f(mx)
    _close(mx.grad(g)(x), mx.grad(ref)(x))
    _close(mx.vmap(mx.grad(g))(mx.stack([x, x * 2])), mx.vmap(mx.grad(ref))(mx.stack([x, x * 2])))
    _close(mx.jvp(g, [x], [mx.ones_like(x)])[1][0], mx.jvp(ref, [x], [mx.ones_like(x)])[1][0])
    _close(mx.compile(g)(x), ref(x))
    # and the MLX oracle agrees with kiln's gradient of the imported function
    mg = mlx_core.grad(f(mlx_core))(mlx_core.array(np.asarray(x)))
    _close(mx.grad(g)(x), np.array(mg))


@needs_mlx
def test_mlx_primitive_kiln_lacks_is_named(tmp_path):
    path = str(tmp_path / "q.mlxfn")
    wq, s, b = mlx_core.quantize(mlx_core.ones((8, 64)), group_size=64, bits=4)
    mlx_core.eval(wq, s, b)
    mlx_core.export_function(path, lambda x: mlx_core.quantized_matmul(x, wq, s, b, group_size=64, bits=4),
                             mlx_core.ones((2, 64)))
    with pytest.raises(ValueError, match="the MLX primitive Quantize"):
        mx.import_function(path)


# ---------------------------------------------------------------- corrupt files
@pytest.fixture
def good_file(tmp_path):
    path = str(tmp_path / "good.kfn")
    c = mx.arange(100.0)
    mx.export_function(path, lambda x: x * c, mx.ones(100))
    with open(path, "rb") as f:
        return path, f.read()


def _write(tmp_path, blob, name="bad.kfn"):
    p = str(tmp_path / name)
    with open(p, "wb") as f:
        f.write(blob)
    return p


def _import_error(path):
    with pytest.raises(ValueError) as e:
        mx.import_function(path)
    assert path in str(e.value)
    return str(e.value)


def test_truncated_kiln_file(good_file, tmp_path):
    _, blob = good_file
    for n in (0, 5, 23, 30, len(blob) // 2, len(blob) - 1):
        msg = _import_error(_write(tmp_path, blob[:n]))
        assert "truncated" in msg or "not a function export" in msg


def test_corrupt_kiln_file(good_file, tmp_path):
    _, blob = good_file
    hdr = bytearray(blob)
    hdr[40] ^= 0xFF
    assert "header is corrupt" in _import_error(_write(tmp_path, bytes(hdr)))
    data = bytearray(blob)
    data[-10] ^= 0x01
    assert "constant data is corrupt" in _import_error(_write(tmp_path, bytes(data)))
    assert "unexpected bytes" in _import_error(_write(tmp_path, blob + b"\0"))


def test_unknown_version(good_file, tmp_path):
    _, blob = good_file
    bad = blob[:8] + struct.pack("<I", 99) + blob[12:]
    assert "unsupported format version 99" in _import_error(_write(tmp_path, bad))


def test_not_an_export(tmp_path):
    assert "not a function export" in _import_error(_write(tmp_path, b"hello world, not an export"))
    np.save(str(tmp_path / "a.npy"), np.ones(3))
    assert "not a function export" in _import_error(str(tmp_path / "a.npy"))
    with pytest.raises(RuntimeError, match="Failed to open"):
        mx.import_function(str(tmp_path / "missing.kfn"))


def test_unknown_primitive_in_kiln_file(tmp_path):
    pool = kilnfmt.ConstantPool()
    trace = {"n_positional": 1, "keywords": [], "inputs": [{"shape": [2], "dtype": "float32"}],
             "constants": [], "nodes": [{"p": "unary.NoSuchOp", "a": {}, "i": [0], "o": [1], "s": [[2]],
                                         "d": ["float32"]}], "outputs": [1]}
    p = str(tmp_path / "u.kfn")
    kilnfmt.write(p, [trace], pool, False, "")
    assert "NoSuchOp" in _import_error(p)


@needs_mlx
def test_corrupt_mlx_files(tmp_path):
    path = str(tmp_path / "m.mlxfn")
    mlx_core.export_function(path, lambda x: mlx_core.abs(x) + mlx_core.array([1.0, 2.0]),
                             mlx_core.array([1.0, -2.0]))
    with open(path, "rb") as f:
        blob = f.read()
    assert mx.import_function(path).format == "mlx"
    for n in (20, len(blob) // 2, len(blob) - 1):
        assert "truncated" in _import_error(_write(tmp_path, blob[:n], "t.mlxfn"))
    renamed = blob.replace(b"Abs", b"Xyz")
    assert "Xyz" in _import_error(_write(tmp_path, renamed, "r.mlxfn"))
    assert "unexpected bytes" in _import_error(_write(tmp_path, blob + b"\0\0", "x.mlxfn"))


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = str(tmp_path / "f.kfn")
    mx.export_function(path, mx.sin, mx.ones(3))
    before = open(path, "rb").read()

    def bad(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        mx.export_function(path, bad, mx.ones(3))
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["f.kfn"]


@pytest.mark.parametrize("shapeless", [False, True])
def test_metal_kernel_is_recorded_not_run(shapeless, tmp_path):
    k = mx.fast.metal_kernel(name="copy", input_names=["a"], output_names=["out"],
                             source="out[0] = a[0];", compile_options={"math_mode": "safe"})

    def call(a):
        return k(inputs=[a], grid=(a.size, 1, 1), threadgroup=(2, 1, 1), output_shapes=[a.shape],
                 output_dtypes=[a.dtype], stream=mx.gpu)[0]

    path = str(tmp_path / "k.kfn")
    mx.export_function(path, call, mx.zeros((2, 2)), shapeless=shapeless)
    g = mx.import_function(path)
    (n,) = g.traces[0].nodes
    assert n.op.source == "out[0] = a[0];" and n.op.grid == (4, 1, 1)
    if shapeless:
        with pytest.raises(ValueError, match="no shape inference"):
            g(mx.zeros((2, 2)))
    else:
        with pytest.raises(RuntimeError, match="No Metal back-end"):
            mx.eval(g(mx.zeros((2, 2)))[0])
    with pytest.raises(RuntimeError, match="No Metal back-end"):
        call(mx.zeros((2, 2)))


# ---------------------------------------------------------------- files kiln writes for the real MLX
_W = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
KILN_TO_MLX = {
    "elementwise": lambda x: [mx.sin(x) * 2 + mx.log(x) - mx.sqrt(x) / mx.rsqrt(x + 1), mx.log2(x),
                              mx.log10(x), mx.abs(-x), mx.exp(x), mx.tanh(x), mx.sigmoid(x), mx.erf(x),
                              mx.floor(x * 3), mx.maximum(x, 0.5), x ** 2.5, x // 0.3, x % 0.3,
                              mx.arctan2(x, x + 1), mx.logaddexp(x, x), mx.isnan(x / 0), mx.isinf(1 / (x - 1)),
                              mx.isfinite(mx.log(x - 1)), mx.isposinf(1 / x), mx.isneginf(-1 / x)],
    "compare_cast": lambda x: [x > 1, mx.equal(x, x), (x < 0.5) | (x > 1.2), mx.logical_not(x > 1),
                               x.astype(mx.int32), x.astype(mx.bfloat16), (x * 10).astype(mx.int32) & 3,
                               (x * 10).astype(mx.int32) << 1, mx.where(x > 1, x, -x)],
    "broadcast": lambda x: [x + mx.array([1.0, 2.0, 3.0, 4.0]) * mx.array(3.0), x[:, :1] * x],
    "mlp": lambda x: mx.maximum(x @ mx.array(_W), 0).sum(axis=1),
    "batched_matmul": lambda x: mx.stack([x, 2 * x]) @ mx.array(_W),
    "reduce": lambda x: [mx.sum(x, 0), mx.max(x, axis=1, keepdims=True), mx.argmax(x, 1), mx.mean(x),
                         mx.softmax(x, -1), mx.cumsum(x, 1), mx.cummax(x, 0, reverse=True), mx.all(x > 0),
                         mx.logsumexp(x, 1), mx.prod(x, (0, 1))],
    "shape": lambda x: [x.reshape(2, 6), x.T, x[1:3, ::2], x[::-1, 2::-2], x[:, ::-1],
                        mx.concatenate([x, x], 0), mx.pad(x, 1), mx.broadcast_to(x[None], (2, 3, 4)),
                        mx.squeeze(x[None]), mx.flatten(x)],
    "conv": lambda x: [mx.conv1d(x[None], mx.ones((2, 3, 4)), stride=2, padding=1),
                       mx.conv2d(x[None, :, :, None], mx.ones((2, 2, 2, 1)), padding=(1, 0))],
    "sort": lambda x: [mx.sort(x, 0), mx.argsort(x, 1), mx.partition(x, 1, 1), *mx.divmod(x, 0.3),
                       mx.searchsorted(mx.sort(x[0]), x)],
    "random": lambda x: x + mx.random.uniform(shape=(3, 4), key=mx.random.key(1)),
    "gather_scatter": lambda x: [x[mx.array([2, 0])], x[:, mx.array([[1, 3], [0, 0]])],
                                 x[mx.array([0, 2]), mx.array([1, 3])], mx.take(x, mx.array([3, 1]), axis=1),
                                 mx.take_along_axis(x, mx.array([[0, 2, 1, 0]]), axis=0),
                                 mx.put_along_axis(x, mx.array([[0, 2, 1, 0]]), mx.array(7.0), axis=0),
                                 x.at[mx.array([0, 0, 2])].add(1.0), x.at[:, mx.array([1, 2])].multiply(3.0),
                                 _set_rows(x, mx.array([1])), _set_box(x)],
}


def _set_box(x):
    y = x * 1
    y[1:3, ::2] = 4.0
    y[0] = mx.array([1.0, 2.0, 3.0, 4.0])
    y[::-1, 1] = mx.array([7.0, 8.0, 9.0])
    return y


@needs_mlx
@pytest.mark.parametrize("name", sorted(KILN_TO_MLX))
def test_kiln_writes_files_mlx_imports(name, tmp_path):
    from kiln.export import export_mlx_function

    f = KILN_TO_MLX[name]
    X = np.arange(1, 13, dtype=np.float32).reshape(3, 4) / 7
    path = str(tmp_path / f"{name}.mlxfn")
    export_mlx_function(path, f, mx.array(X), metadata="from kiln")
    g, md = mlx_core.import_function(path, return_metadata=True)
    assert md == "from kiln"
    got = g(mlx_core.array(X))
    want = _flat(f(mx.array(X)))
    assert len(got) == len(want)
    for a, w in zip(got, want):
        assert str(a.dtype).rsplit(".", 1)[-1] == w.dtype.name
        a = np.array(a.astype(mlx_core.float32)) if a.dtype == mlx_core.bfloat16 else np.array(a)
        np.testing.assert_allclose(a.astype(np.float64), np.asarray(w).astype(np.float64), rtol=1e-5, atol=1e-5)
    # and kiln reads its own .mlxfn back
    _assert_same(list(mx.import_function(path)(mx.array(X))), want)


def test_mlx_writer_names_unsupported_primitive(tmp_path):
    from kiln.export import export_mlx_function

    path = str(tmp_path / "g.mlxfn")
    with pytest.raises(ValueError, match="FFT"):
        export_mlx_function(path, lambda x: mx.fft.fft(x), mx.ones((3, 2)))
    assert not os.path.exists(path)


@needs_mlx
def test_random_damage_never_crashes(tmp_path):
    """Flipped bytes in either format: a clean import or a ValueError naming the file, nothing else."""
    kpath = str(tmp_path / "k.kfn")
    mpath = str(tmp_path / "m.mlxfn")
    mx.export_function(kpath, lambda x: mx.sum(mx.sin(x) * mx.arange(4.0), axis=0), mx.ones((2, 4)))
    mlx_core.export_function(mpath, lambda x: mlx_core.sum(mlx_core.sin(x) * mlx_core.arange(4.0), axis=0),
                             mlx_core.ones((2, 4)))
    rng = np.random.default_rng(0)
    for src in (kpath, mpath):
        blob = open(src, "rb").read()
        for k in range(150):
            bad = bytearray(blob)
            for _ in range(int(rng.integers(1, 4))):
                bad[int(rng.integers(len(bad)))] = int(rng.integers(256))
            p = _write(tmp_path, bytes(bad), f"d{k}" + os.path.splitext(src)[1])
            try:
                mx.import_function(p)
            except ValueError as e:
                assert p in str(e)
