"""mx.fast against NumPy references and MLX: values, dtypes, gradients, vmap, compile, errors."""
import numpy as np
import pytest

import kiln.core as mx
from harness import OpCase, check_compile, check_forward, check_grads, check_vmap, mlx_core


def _rms(x, w):
    return (x / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-5) * w).astype(x.dtype)


def _ln(x, w, b):
    mu = x.mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b).astype(x.dtype)


def _sdpa(q, k, v, scale=0.5, causal=False):
    rep = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, rep, 1), np.repeat(v, rep, 1)
    s = q @ np.swapaxes(k, -1, -2) * scale
    if causal:
        tq, tk = s.shape[-2:]
        s = np.where(np.arange(tk) <= np.arange(tq)[:, None] + tk - tq, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True) @ v).astype(q.dtype)


QKV = ((1, 4, 3, 4), (1, 2, 5, 4), (1, 2, 5, 3))
CASES = [
    OpCase("rms_norm", lambda m, x, w: m.fast.rms_norm(x, w, 1e-5), _rms, shapes=((2, 3, 4), (4,))),
    OpCase("rms_norm_none", lambda m, x: m.fast.rms_norm(x, None, 1e-5), lambda x: _rms(x, 1.0), shapes=((3, 4),)),
    OpCase("layer_norm", lambda m, x, w, b: m.fast.layer_norm(x, w, b, 1e-5), _ln, shapes=((2, 3, 4), (4,), (4,))),
    OpCase("layer_norm_none", lambda m, x: m.fast.layer_norm(x, None, None, 1e-5), lambda x: _ln(x, 1.0, 0.0), shapes=((3, 4),)),
    OpCase("rope", lambda m, x: m.fast.rope(x, 4, traditional=False, base=1e4, scale=0.5, offset=2), shapes=((2, 3, 6),)),
    OpCase("rope_trad", lambda m, x: m.fast.rope(x, 6, traditional=True, base=100.0, scale=1.0, offset=1), shapes=((2, 3, 6),)),
    OpCase("rope_freqs", lambda m, x, f: m.fast.rope(x, 4, traditional=False, base=None, scale=1.0, offset=0, freqs=f),
           shapes=((2, 1, 3, 4), (2,)), gen=lambda r, s, d: (r.random(s) + 0.5).astype(d)),
    OpCase("sdpa_gqa", lambda m, q, k, v: m.fast.scaled_dot_product_attention(q, k, v, scale=0.5), _sdpa, shapes=QKV),
    OpCase("sdpa_causal", lambda m, q, k, v: m.fast.scaled_dot_product_attention(q, k, v, scale=0.5, mask="causal"),
           lambda q, k, v: _sdpa(q, k, v, causal=True), shapes=QKV),
    OpCase("sdpa_additive", lambda m, q, k, v, a: m.fast.scaled_dot_product_attention(q, k, v, scale=0.5, mask=a),
           shapes=QKV + ((3, 5),)),
    OpCase("sdpa_sinks", lambda m, q, k, v, s: m.fast.scaled_dot_product_attention(q, k, v, scale=0.5, sinks=s),
           shapes=QKV + ((4,),)),
]
for c in CASES:
    c.rtol, c.atol = 1e-4, 1e-5



@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.name not in ("rope_freqs",)], ids=str)
def test_grads(case):
    check_grads(case, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("case", CASES[::2], ids=str)
def test_vmap(case):
    check_vmap(case, in_axes=(0,) * len(case.shapes))


@pytest.mark.parametrize("case", CASES[::3], ids=str)
def test_compile(case):
    check_compile(case)


def test_boolean_mask_and_dtypes():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in QKV)
    keep = rng.random((3, 5)) > 0.3
    keep[:, 0] = True
    got = mx.fast.scaled_dot_product_attention(mx.array(q), mx.array(k), mx.array(v), scale=0.5,
                                               mask=mx.array(keep))
    add = np.where(keep, 0.0, -np.inf).astype(np.float32)
    want = mx.fast.scaled_dot_product_attention(mx.array(q), mx.array(k), mx.array(v), scale=0.5,
                                                mask=mx.array(add))
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-6)
    h = mx.fast.layer_norm(mx.array(q).astype(mx.float16), None, None, 1e-5)
    assert h.dtype == mx.float16
    r = mx.fast.rope(mx.array(q).astype(mx.bfloat16), 4, traditional=False, base=1e4, scale=1.0,
                     offset=mx.array([3]))
    assert r.dtype == mx.bfloat16


ERRORS = [
    lambda m: m.fast.rms_norm(m.zeros((2, 4)), m.ones(3), 1e-5),
    lambda m: m.fast.rms_norm(m.zeros((2, 4)), m.ones((1, 4)), 1e-5),
    lambda m: m.fast.rms_norm(m.zeros((2, 4), dtype=m.int32), None, 1e-5),
    lambda m: m.fast.rms_norm(m.array(1.0), None, 1e-5),
    lambda m: m.fast.layer_norm(m.zeros((2, 4)), None, m.ones(3), 1e-5),
    lambda m: m.fast.scaled_dot_product_attention(m.zeros((1, 4, 3, 8)), m.zeros((1, 3, 5, 8)), m.zeros((1, 3, 5, 8)), scale=1.0),
    lambda m: m.fast.scaled_dot_product_attention(m.zeros((1, 4, 3, 8)), m.zeros((1, 2, 5, 8)), m.zeros((1, 2, 5, 8)), scale=1.0, mask="foo"),
    lambda m: m.fast.scaled_dot_product_attention(m.zeros((4, 3, 8)), m.zeros((2, 5, 8)), m.zeros((2, 5, 8)), scale=1.0),
    lambda m: m.fast.rope(m.zeros((2, 3, 8)), 8, traditional=False, base=None, scale=1.0, offset=0),
    lambda m: m.fast.rope(m.zeros((2, 3, 8)), 8, traditional=False, base=1e4, scale=1.0, offset=0, freqs=m.ones(4)),
    lambda m: m.fast.rope(m.zeros((2, 3, 8)), 7, traditional=False, base=1e4, scale=1.0, offset=0),
    lambda m: m.fast.rope(m.zeros((2, 3, 8)), 10, traditional=False, base=1e4, scale=1.0, offset=0),
    lambda m: m.fast.rope(m.zeros((3, 8)), 8, traditional=False, base=1e4, scale=1.0, offset=0),
    lambda m: m.fast.rope(m.zeros((2, 3, 8)), 8, traditional=False, base=1e4, scale=1.0, offset=m.array([1, 2, 3])),
]


@pytest.mark.parametrize("k", range(len(ERRORS)))
def test_errors(k):
    with pytest.raises(ValueError) as info:
        ERRORS[k](mx)
    if mlx_core is not None:
        with pytest.raises(ValueError) as minfo:
            ERRORS[k](mlx_core)
        assert str(info.value) == str(minfo.value)


def test_custom_kernels_not_supported():
    # As MLX without Metal: the kernel is made, calling it raises.
    k = mx.fast.metal_kernel(name="k", input_names=["x"], output_names=["y"], source="")
    with pytest.raises(RuntimeError, match="No Metal back-end"):
        k(inputs=[mx.ones(2)], grid=(2, 1, 1), threadgroup=(2, 1, 1), output_shapes=[(2,)],
          output_dtypes=[mx.float32], stream=mx.gpu)
    with pytest.raises(ValueError, match="Only supports the GPU"):
        k(inputs=[mx.ones(2)], grid=(2, 1, 1), threadgroup=(2, 1, 1), output_shapes=[(2,)],
          output_dtypes=[mx.float32], stream=mx.cpu)
    with pytest.raises(NotImplementedError, match="kiln"):
        mx.fast.cuda_kernel(name="k", input_names=["x"], output_names=["y"], source="")
