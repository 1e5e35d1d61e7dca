"""Quantization: packed layouts against real MLX bit for bit, the quantized products
(forward, gradients in both modes, vmap, compile) from one table, errors, nn layers."""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx
import kiln.nn as nn
from kiln.primitives.quantized import pack, unpack
from tests.harness import (OpCase, check_compile, check_forward, check_grads, check_vmap, mlx_core,
                           needs_mlx)

MODES = [("affine", gs, b) for gs in (32, 64, 128) for b in (1, 2, 3, 4, 5, 6, 8)] + [
    ("mxfp4", 32, 4), ("mxfp8", 32, 8), ("nvfp4", 16, 4)]


def _weights(dt, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((16, 256)) * rng.uniform(0.01, 10, (16, 1))
    w[0, :32] = 0.0  # an all-zero group
    return w.astype(np.float32)


def _np(a):
    return np.array(a.astype(mx.float32) if a.dtype == mx.bfloat16 else a)


def _mnp(a):
    return np.array(a.astype(mlx_core.float32) if a.dtype == mlx_core.bfloat16 else a)


# ---------------------------------------------------------------- layout
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 8])
def test_pack_is_a_little_endian_bit_stream(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 2**bits, (3, 64)).astype(np.uint32)
    words = pack(np, codes, bits)
    assert words.shape == (3, 64 * bits // 32) and words.dtype == np.uint32
    stream = np.unpackbits(words.view(np.uint8), axis=-1, bitorder="little")
    want = (stream.reshape(3, 64, bits).astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(-1)
    np.testing.assert_array_equal(want, codes)
    np.testing.assert_array_equal(unpack(np, words, bits, 64), codes)


@needs_mlx
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("mode,gs,bits", MODES, ids=[f"{m}-{g}-{b}" for m, g, b in MODES])
def test_quantize_dequantize_bit_exact_with_mlx(mode, gs, bits, dtype):
    w = _weights(dtype, seed=bits + gs)
    kw = mx.array(w).astype(getattr(mx, dtype))
    mw = mlx_core.array(w).astype(getattr(mlx_core, dtype))
    ko = mx.quantize(kw, gs, bits, mode=mode)
    mo = mlx_core.quantize(mw, gs, bits, mode=mode)
    assert len(ko) == len(mo)
    for a, b in zip(ko, mo):
        assert a.dtype.name == str(b.dtype).rsplit(".", 1)[-1] and a.shape == tuple(b.shape)
        np.testing.assert_array_equal(_np(a), _mnp(b))
    # Each side dequantizes the other's arrays to the same values.
    for odt in (None, "float32"):
        kd = mx.dequantize(*ko, group_size=gs, bits=bits, mode=mode, dtype=odt and getattr(mx, odt))
        md = mlx_core.dequantize(*[mlx_core.array(_np(a)).astype(b.dtype) for a, b in zip(ko, mo)],
                                 group_size=gs, bits=bits, mode=mode, dtype=odt and getattr(mlx_core, odt))
        assert kd.dtype.name == str(md.dtype).rsplit(".", 1)[-1]
        np.testing.assert_array_equal(_np(kd), _mnp(md))


@needs_mlx
@pytest.mark.parametrize("g", [0.7, 5.0])
def test_nvfp4_global_scale_bit_exact(g):
    w = _weights("float32", seed=3)
    ko = mx.quantize(mx.array(w), mode="nvfp4", global_scale=mx.array(g))
    mo = mlx_core.quantize(mlx_core.array(w), mode="nvfp4", global_scale=mlx_core.array(g))
    for a, b in zip(ko, mo):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    kd = mx.dequantize(*ko, mode="nvfp4", global_scale=mx.array(g))
    md = mlx_core.dequantize(*mo, mode="nvfp4", global_scale=mlx_core.array(g))
    assert kd.dtype == mx.float32
    np.testing.assert_array_equal(np.array(kd), np.array(md))


@needs_mlx
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_fp8_casts_bit_exact(dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(4000) * np.exp(rng.standard_normal(4000) * 4)).astype(np.float32)
    x[:6] = [np.nan, np.inf, -np.inf, 1e6, -0.0, 0.0]
    k = mx.to_fp8(mx.array(x).astype(getattr(mx, dtype)))
    m = mlx_core.to_fp8(mlx_core.array(x).astype(getattr(mlx_core, dtype)))
    np.testing.assert_array_equal(np.array(k), np.array(m))
    codes = np.arange(256, dtype=np.uint8)
    kd = mx.from_fp8(mx.array(codes), getattr(mx, dtype))
    md = mlx_core.from_fp8(mlx_core.array(codes), getattr(mlx_core, dtype))
    np.testing.assert_array_equal(_np(kd), _mnp(md))


# ---------------------------------------------------------------- the product table
def _qcase(name, mode="affine", gs=64, bits=4, transpose=True, xshape=(3, 128), wshape=(8, 128),
           argnums=(0,), **kw):
    """A quantized_matmul case: inputs are x and the float weight (quantized inside, so the
    weight is a constant of the product); gradients are taken with respect to x."""
    def fn(m, x, w):
        parts = m.quantize(w, gs, bits, mode=mode)
        parts = [m.stop_gradient(p) for p in parts]
        return m.quantized_matmul(x, parts[0], *parts[1:], transpose=transpose, group_size=gs, bits=bits,
                                  mode=mode)

    def ref(x, w):
        parts = mx.quantize(mx.array(w.astype(np.float32)), gs, bits, mode=mode)
        wh = np.array(mx.dequantize(*parts, group_size=gs, bits=bits, mode=mode, dtype=mx.float32))
        return x @ (np.swapaxes(wh, -1, -2) if transpose else wh)

    # Small inputs keep the sums near 1: the fused kernel and the BLAS path add
    # in different orders, and the vmap check's absolute tolerance is 1e-6.
    return OpCase(name, fn, ref, shapes=(xshape, wshape), grad_argnums=argnums, rtol=2e-5, atol=2e-5,
                  gen=lambda rng, s, d: (rng.standard_normal(s) / 16).astype(d), **kw)


def _scales_case(name):
    # Gradients with respect to the affine scales and biases (x and w fixed).
    w = np.random.default_rng(9).standard_normal((8, 64)).astype(np.float32)
    q, _, _ = mx.quantize(mx.array(w), 32, 4)
    x = np.random.default_rng(10).standard_normal((3, 64)).astype(np.float32)

    def fn(m, s, b):
        return m.quantized_matmul(m.array(x).astype(s.dtype), m.array(np.array(q)), s, b,
                                  group_size=32, bits=4)

    return OpCase(name, fn, None, shapes=((8, 2), (8, 2)), mlx=True, rtol=1e-5, atol=1e-5,
                  gen=lambda rng, s, d: (rng.standard_normal(s) / 16).astype(d))


def _gather_case(name, mode="affine"):
    def fn(m, x, w):
        parts = [m.stop_gradient(p) for p in m.quantize(w, mode=mode)]
        idx = m.array(np.array([[1], [0], [1]], np.uint32))
        return m.gather_qmm(x, parts[0], *parts[1:], rhs_indices=idx, mode=mode)

    return OpCase(name, fn, None, shapes=((3, 2, 64), (2, 8, 64)), grad_argnums=(0,), rtol=2e-5, atol=2e-5,
                  gen=lambda rng, s, d: (rng.standard_normal(s) / 8).astype(d))


def _gather_scales_case(name):
    # Gradients of gather_qmm with respect to the affine scales and biases, with left indices.
    w = np.random.default_rng(11).standard_normal((3, 8, 64)).astype(np.float32)
    q = np.array(mx.quantize(mx.array(w), 32, 4)[0])
    x = np.random.default_rng(12).standard_normal((2, 1, 64)).astype(np.float32)

    def fn(m, s, b):
        return m.gather_qmm(m.array(x).astype(s.dtype), m.array(q), s, b, group_size=32, bits=4,
                            lhs_indices=m.array(np.array([1, 0, 1], np.uint32)),
                            rhs_indices=m.array(np.array([2, 0, 2], np.uint32)))

    return OpCase(name, fn, None, shapes=((3, 8, 2), (3, 8, 2)), rtol=1e-5, atol=1e-5,
                  gen=lambda rng, s, d: (rng.standard_normal(s) / 16).astype(d))


CASES = [
    _qcase("qmm_affine4"),
    _qcase("qmm_affine4_vec", xshape=(128,)),
    _qcase("qmm_affine4_batched_x", xshape=(2, 3, 128)),
    _qcase("qmm_affine2_nt", bits=2, transpose=False, xshape=(3, 8), wshape=(8, 128)),
    _qcase("qmm_affine3_g32", gs=32, bits=3),
    _qcase("qmm_affine8_g128", gs=128, bits=8, xshape=(2, 256), wshape=(4, 256)),
    _qcase("qmm_affine5_nt", bits=5, transpose=False, xshape=(2, 4), wshape=(4, 128)),
    _qcase("qmm_affine6", gs=32, bits=6),
    _qcase("qmm_affine4_large_m", xshape=(16, 128)),
    _qcase("qmm_batched_w", xshape=(2, 3, 128), wshape=(2, 8, 128)),
    _qcase("qmm_mxfp4", mode="mxfp4", gs=32, bits=4),
    _qcase("qmm_mxfp8_nt", mode="mxfp8", gs=32, bits=8, transpose=False, xshape=(3, 8), wshape=(8, 64)),
    _qcase("qmm_nvfp4", mode="nvfp4", gs=16, bits=4),
    _scales_case("qmm_scales_biases"),
    _gather_case("gather_qmm_affine"),
    _gather_case("gather_qmm_mxfp4", mode="mxfp4"),
    _gather_scales_case("gather_qmm_scales_biases"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_forward(case):
    check_forward(case)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_grads(case):
    check_grads(case, rtol=1e-3, atol=1e-4, identity_rtol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.vmap], ids=[c.name for c in CASES if c.vmap])
def test_vmap(case):
    check_vmap(case)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_compile(case):
    check_compile(case)


def test_vmap_over_quantized_weights():
    rng = np.random.default_rng(0)
    ws = rng.standard_normal((3, 8, 64)).astype(np.float32)
    x = mx.array(rng.standard_normal((2, 64)).astype(np.float32))
    q, s, b = mx.quantize(mx.array(ws), 32, 4)
    got = mx.vmap(lambda q, s, b: mx.quantized_matmul(x, q, s, b, group_size=32), in_axes=(0, 0, 0))(q, s, b)
    want = np.stack([np.array(mx.quantized_matmul(x, q[i], s[i], b[i], group_size=32)) for i in range(3)])
    np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-5)
    dq = mx.vmap(lambda q, s, b: mx.dequantize(q, s, b, group_size=32), in_axes=(1, 1, 1))(
        mx.swapaxes(q, 0, 1), mx.swapaxes(s, 0, 1), mx.swapaxes(b, 0, 1))
    np.testing.assert_array_equal(np.array(dq), np.array(mx.dequantize(q, s, b, group_size=32)))


def test_small_m_kernel_matches_blocked_path():
    # M <= 8 runs the fused kernel (with numba), larger M the blocked BLAS path.
    rng = np.random.default_rng(1)
    w = mx.array(rng.standard_normal((96, 256)).astype(np.float32))
    for bits in (2, 4, 8):
        for transpose in (True, False):
            q, s, b = mx.quantize(w, 64, bits)
            x = rng.standard_normal((12, 256 if transpose else 96)).astype(np.float32)
            big = np.array(mx.quantized_matmul(mx.array(x), q, s, b, transpose=transpose, bits=bits))
            for m in (1, 3, 8):
                small = np.array(mx.quantized_matmul(mx.array(x[:m]), q, s, b, transpose=transpose, bits=bits))
                np.testing.assert_allclose(small, big[:m], rtol=1e-5, atol=1e-4)


@needs_mlx
def test_products_match_mlx():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 32, 128)).astype(np.float32)
    x = rng.standard_normal((5, 1, 128)).astype(np.float32)
    for mode in ("affine", "mxfp4", "mxfp8", "nvfp4"):
        kp = mx.quantize(mx.array(w), mode=mode)
        mp = mlx_core.quantize(mlx_core.array(w), mode=mode)
        idx = np.array([[3], [0], [1], [1], [2]], np.uint32)
        k = mx.gather_qmm(mx.array(x), *kp, rhs_indices=mx.array(idx), mode=mode, sorted_indices=False)
        m = mlx_core.gather_qmm(mlx_core.array(x), *mp, rhs_indices=mlx_core.array(idx), mode=mode)
        np.testing.assert_allclose(np.array(k), np.array(m), rtol=1e-4, atol=1e-4)
        k = mx.quantized_matmul(mx.array(x), *[p[0] for p in kp], mode=mode)
        m = mlx_core.quantized_matmul(mlx_core.array(x), *[p[0] for p in mp], mode=mode)
        assert k.dtype.name == str(m.dtype).rsplit(".", 1)[-1]
        np.testing.assert_allclose(np.array(k), np.array(m), rtol=1e-4, atol=1e-4)
    # qqmm: MLX 0.32.4 has no general CPU qqmm, so compare with the dequantized product.
    xq = rng.standard_normal((2, 64)).astype(np.float32)
    wq = rng.standard_normal((8, 64)).astype(np.float32)
    for mode in ("nvfp4", "mxfp8"):
        k = mx.qqmm(mx.array(xq), mx.array(wq), mode=mode)
        xh = mlx_core.dequantize(*mlx_core.quantize(mlx_core.array(xq), mode=mode), mode=mode, dtype=mlx_core.float32)
        wh = mlx_core.dequantize(*mlx_core.quantize(mlx_core.array(wq), mode=mode), mode=mode, dtype=mlx_core.float32)
        np.testing.assert_allclose(np.array(k), np.array(xh) @ np.array(wh).T, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- errors
W = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
ERRORS = [
    ("group size", lambda m: m.quantize(m.array(W), group_size=16), "[quantize] The requested group size 16"),
    ("bits", lambda m: m.quantize(m.array(W), bits=7), "[quantize] The requested number of bits 7"),
    ("mode", lambda m: m.quantize(m.array(W), mode="xyz"), "[quantize] Invalid quantization mode 'xyz'."),
    ("1-d", lambda m: m.quantize(m.array(W[0])), "[quantize] The matrix to be quantized must have at least 2"),
    ("not divisible", lambda m: m.quantize(m.array(W[:, :48])), "[quantize] The last dimension of the matrix"),
    ("integer", lambda m: m.quantize(m.zeros((2, 64), m.int32)), "[quantize] Only real floating types"),
    ("mx group", lambda m: m.quantize(m.array(W), 64, mode="mxfp4"), "[quantize] mxfp4 quantization requires group size 32"),
    ("global scale", lambda m: m.quantize(m.array(W), global_scale=m.array(1.0)), "[quantize] Global scale is only"),
    ("no biases", lambda m: m.dequantize(*m.quantize(m.array(W))[:2]), "[dequantize] Biases must be provided"),
    ("scales shape", lambda m: m.dequantize(m.quantize(m.array(W))[0], m.zeros((8, 2)), m.zeros((8, 2))),
     "[dequantize] Shape of scales and biases does not match"),
    ("fp scales dtype", lambda m: m.dequantize(m.quantize(m.array(W))[0], m.zeros((8, 2)), mode="mxfp4"),
     "[dequantize] Scale type must be uint8"),
    ("out dtype", lambda m: m.dequantize(*m.quantize(m.array(W)), dtype=m.int32), "[dequantize] Only real floating"),
    ("qmm K", lambda m: m.quantized_matmul(m.zeros((2, 32)), *m.quantize(m.array(W))),
     "[quantized_matmul] Last dimension of first input with shape (..., 32)"),
    ("qmm bits", lambda m: m.quantized_matmul(m.zeros((2, 64)), *m.quantize(m.array(W)), bits=8),
     "[quantized_matmul] The shapes of the weight and scales are incompatible"),
    ("qmm mode", lambda m: m.quantized_matmul(m.zeros((2, 64)), *m.quantize(m.array(W)), mode="xyz"),
     "[quantized_matmul] Invalid quantization mode"),
    ("qmm float w", lambda m: m.quantized_matmul(m.zeros((2, 64)), m.zeros((8, 8)), *m.quantize(m.array(W))[1:]),
     "[quantized_matmul] The weight matrix should be uint32"),
    ("gqmm idx", lambda m: m.gather_qmm(m.zeros((2, 64)), *m.quantize(m.array(W)), rhs_indices=m.array(0.0)),
     "[gather_qmm] Got indices with invalid dtype"),
    ("to_fp8", lambda m: m.to_fp8(m.zeros((2,), m.int32)), "[to_fp8] Only real floating types"),
    ("from_fp8", lambda m: m.from_fp8(m.zeros((2,))), "[from_fp8] Input must have type uint8"),
]


@pytest.mark.parametrize("name,fn,msg", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(name, fn, msg):
    with pytest.raises(ValueError) as kiln_err:
        fn(mx)  # raised when the op is built, before any eval
    assert msg in str(kiln_err.value)
    if mlx_core is not None:
        with pytest.raises(ValueError) as mlx_err:
            fn(mlx_core)
        assert msg in str(mlx_err.value)


def test_no_gradient_wrt_fp_scales():
    q, s = mx.quantize(mx.array(W), mode="mxfp4")
    with pytest.raises(ValueError, match="no gradient wrt scales"):
        mx.grad(lambda s: mx.quantized_matmul(mx.ones((2, 64)), q, s, mode="mxfp4").sum())(s)


# ---------------------------------------------------------------- nn
def test_nn_quantize_and_layers():
    m = nn.Sequential(nn.Embedding(5, 256), nn.ReLU(), nn.Linear(256, 256))
    nn.quantize(m)
    assert isinstance(m.layers[0], nn.QuantizedEmbedding) and isinstance(m.layers[2], nn.QuantizedLinear)
    assert list(m.layers[2].trainable_parameters()) == ["bias"]
    m = nn.Sequential(nn.Embedding(5, 256), nn.Linear(256, 256, bias=False))
    nn.quantize(m, class_predicate=lambda p, mod: isinstance(mod, nn.Linear))
    assert isinstance(m.layers[0], nn.Embedding) and isinstance(m.layers[1], nn.QuantizedLinear)
    m = nn.Sequential(nn.Linear(64, 32, bias=False))
    nn.quantize(m, mode="mxfp8", quantize_input=True)
    assert isinstance(m.layers[0], nn.QQLinear)
    y_train = m(mx.ones((2, 64)))
    m.eval()
    assert m.layers[0].weight.dtype == mx.uint32
    np.testing.assert_allclose(np.array(m(mx.ones((2, 64)))), np.array(y_train), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        nn.quantize(nn.Sequential(nn.Embedding(5, 64)), mode="mxfp8", quantize_input=True)


def test_quantized_embedding_rows_and_as_linear():
    emb = nn.Embedding(32, 128)
    qe = nn.QuantizedEmbedding.from_embedding(emb, bits=8)
    idx = mx.array([2, 6, 9, 3])
    w_hat = mx.dequantize(qe.weight, qe.scales, qe.biases, 64, 8)
    np.testing.assert_array_equal(np.array(qe(idx)), np.array(w_hat)[[2, 6, 9, 3]])
    x = mx.random.uniform(shape=(2, 128))
    np.testing.assert_allclose(np.array(qe.as_linear(x)), np.array(x) @ np.array(w_hat).T, rtol=1e-5, atol=1e-5)


@needs_mlx
def test_small_language_model_logits_match_mlx():
    import mlx.nn as mnn

    def build(nn_, m):
        class LM(nn_.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn_.Embedding(64, 128)
                self.l1 = nn_.Linear(128, 256)
                self.l2 = nn_.Linear(256, 128)
                self.norm = nn_.RMSNorm(128)

            def __call__(self, t):
                h = self.embed(t)
                h = h + self.l2(nn_.gelu(self.l1(h)))
                return self.embed.as_linear(self.norm(h))

        return LM()

    km, mm = build(nn, mx), build(mnn, mlx_core)
    rng = np.random.default_rng(0)
    weights = {k: rng.standard_normal(v.shape).astype(np.float32) * 0.2
               for k, v in __import__("kiln.utils", fromlist=["tree_flatten"]).tree_flatten(km.parameters())}
    km.load_weights([(k, mx.array(v)) for k, v in weights.items()])
    mm.load_weights([(k, mlx_core.array(v)) for k, v in weights.items()])
    nn.quantize(km, group_size=32, bits=4)
    mnn.quantize(mm, group_size=32, bits=4)
    t = np.array([[1, 5, 9, 63, 0, 7]])
    np.testing.assert_allclose(np.array(km(mx.array(t))), np.array(mm(mlx_core.array(t))), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- files
def _write_gguf(path, w):
    gguf = pytest.importorskip("gguf")
    from gguf.quants import quantize as gquant

    writer = gguf.GGUFWriter(str(path), "llama")
    types = {"q40.weight": gguf.GGMLQuantizationType.Q4_0, "q41.weight": gguf.GGMLQuantizationType.Q4_1,
             "q80.weight": gguf.GGMLQuantizationType.Q8_0, "plain": gguf.GGMLQuantizationType.Q4_0}
    for name, qt in types.items():
        data = gquant(w, qt)
        writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qt)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return types


def test_gguf_q4_q8_load_as_quantized(tmp_path):
    from gguf import GGUFReader
    from gguf.quants import dequantize as gdequant

    w = np.random.default_rng(0).standard_normal((4, 128)).astype(np.float32)
    path = tmp_path / "q.gguf"
    _write_gguf(path, w)
    got = mx.load(str(path))
    assert {"q40.weight", "q40.scales", "q40.biases", "plain", "plain.scales", "plain.biases"} <= set(got)
    for t in GGUFReader(str(path)).tensors:
        base = t.name[:-len("weight")] if t.name.endswith(".weight") else t.name + "."
        bits = 8 if t.name.startswith("q80") else 4
        assert got[t.name].dtype == mx.uint32 and got[base + "scales"].dtype == mx.float16
        deq = mx.dequantize(got[t.name], got[base + "scales"], got[base + "biases"], 32, bits, dtype=mx.float32)
        np.testing.assert_allclose(np.array(deq), gdequant(np.asarray(t.data), t.tensor_type), rtol=2e-3, atol=2e-3)
    if mlx_core is not None:
        ref = mlx_core.load(str(path))
        assert sorted(ref) == sorted(got)
        for k in ref:
            np.testing.assert_array_equal(np.array(got[k]), np.array(ref[k]))


def test_safetensors_f8_e4m3_loads_as_codes(tmp_path):
    import json
    import struct

    codes = np.array([0, 56, 126, 200, 128, 1], np.uint8)
    head = json.dumps({"x": {"dtype": "F8_E4M3", "shape": [2, 3], "data_offsets": [0, 6]}}).encode()
    path = tmp_path / "f8.safetensors"
    path.write_bytes(struct.pack("<Q", len(head)) + head + codes.tobytes())
    x = mx.load(str(path))["x"]
    assert x.dtype == mx.uint8
    np.testing.assert_array_equal(np.array(x).ravel(), codes)
    import ml_dtypes

    np.testing.assert_array_equal(np.array(mx.from_fp8(x, mx.float32)).ravel(),
                                  codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32))


@needs_mlx
@pytest.mark.parametrize("mode", ["affine", "mxfp4", "nvfp4"])
def test_quantized_layer_files_round_trip_with_mlx(tmp_path, mode):
    import mlx.nn as mnn

    lin = nn.Linear(64, 16)
    ql = nn.QuantizedLinear.from_linear(lin, mode=mode)
    path = str(tmp_path / "k.safetensors")
    ql.save_weights(path)
    mq = mnn.QuantizedLinear(64, 16, mode=mode)
    mq.load_weights(path)
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(np.array(ql(mx.array(x))), np.array(mq(mlx_core.array(x))), rtol=1e-5, atol=1e-5)
    path2 = str(tmp_path / "m.safetensors")
    mq.save_weights(path2)
    back = nn.QuantizedLinear(64, 16, mode=mode)
    back.load_weights(path2)
    for k, v in mq.parameters().items():
        np.testing.assert_array_equal(np.array(back[k]), np.array(v))


def test_numpy_fallback_without_numba(monkeypatch):
    # Without numba every product takes the blocked NumPy path, with the same results.
    from kiln.backend import quantized_cpu

    rng = np.random.default_rng(4)
    q, s, b = mx.quantize(mx.array(rng.standard_normal((32, 128)).astype(np.float32)))
    x = mx.array(rng.standard_normal((2, 128)).astype(np.float32))
    with_numba = np.array(mx.quantized_matmul(x, q, s, b))
    monkeypatch.setattr(quantized_cpu, "_nb", None)
    assert not quantized_cpu.fused_applies(mx.quantized_matmul(x, q, s, b)._prim, np.zeros((2, 128)), np.zeros((32, 16)))
    np.testing.assert_allclose(np.array(mx.quantized_matmul(x, q, s, b)), with_numba, rtol=1e-5, atol=1e-5)
