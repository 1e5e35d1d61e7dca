"""The program tests/test_distributed.py runs under ``python -m kiln.launch``.

Every rank runs the cases below and saves what it got to ``OUT/rank{r}.npz``
(arrays) and ``OUT/rank{r}.json`` (error messages); the test recomputes the
inputs with the same functions (``case_input``) and checks the results
against NumPy and single-process kiln. ``python -m kiln.launch -n N
tests/distributed_worker.py OUT [main|faults]``.
"""
from __future__ import annotations

import json
import os
import zlib
import signal
import sys
import time

import numpy as np

# (op, dtype name, shape) — shapes given for one rank; sum_scatter's first
# axis is multiplied by the group size.
OPS = ["all_sum", "all_max", "all_min", "all_gather", "sum_scatter"]
DTYPES = ["float32", "float16", "bfloat16", "float64", "int32", "int8", "uint8", "int16",
          "uint16", "uint32", "int64", "uint64", "bool", "complex64"]
SHAPES = [(), (5,), (2, 3)]


def cases(size: int):
    for op in OPS:
        for dt in DTYPES:
            if dt == "complex64" and op in ("all_max", "all_min"):
                continue
            for shape in SHAPES:
                if op == "sum_scatter":
                    shape = (2 * size,) + shape
                yield op, dt, shape


def key(op, dt, shape) -> str:
    return f"{op}-{dt}-{'x'.join(map(str, shape)) or 'scalar'}"


def case_input(dt: str, shape, rank: int) -> np.ndarray:
    """The NumPy input of rank ``rank`` (small values: exact in every dtype)."""
    import ml_dtypes
    rng = np.random.default_rng(zlib.crc32(f"{dt}{shape}".encode()) + 7919 * rank)
    if dt == "bool":
        return rng.random(shape) < 0.5
    vals = rng.integers(0, 6, size=shape)
    if dt == "complex64":
        return (vals + 1j * rng.integers(-3, 3, size=shape)).astype(np.complex64)
    npdt = ml_dtypes.bfloat16 if dt == "bfloat16" else np.dtype(dt)
    return np.asarray(vals).astype(npdt)


def mlp_data():
    """Inputs and targets of the data-parallel training case (8 examples)."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal((8, 4)).astype(np.float32),
            rng.standard_normal((8, 2)).astype(np.float32))


def train_mlp(mx, nn, optim, x, y, steps: int = 5, average=None):
    """SGD on a small MLP from seed 0; ``average`` maps gradients (data parallel)."""
    mx.random.seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = optim.SGD(learning_rate=0.1)

    def loss(m, a, b):
        return nn.losses.mse_loss(m(a), b)

    step = nn.value_and_grad(model, loss)
    for _ in range(steps):
        _, grads = step(model, mx.array(x), mx.array(y))
        if average is not None:
            grads = average(grads)
        opt.update(model, grads)
        mx.eval(model.parameters())
    return model


def quantized_case(mx, nn, n: int):
    """A QuantizedLinear(64 n -> 4 n) with a bias, and an input for it."""
    mx.random.seed(41)
    ql = nn.QuantizedLinear(64 * n, 4 * n)
    ql.bias = mx.random.normal((4 * n,))
    x = mx.array(np.random.default_rng(8).standard_normal((3, 64 * n)).astype(np.float32))
    return ql, x


def _save_float(a):
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype.name == "bfloat16" else a


def run_main(out: str) -> None:
    import kiln.core as mx
    import kiln.nn as nn
    import kiln.optimizers as optim
    from kiln.utils import tree_flatten

    d = mx.distributed
    g = d.init()
    r, n = g.rank(), g.size()
    res, msgs = {}, {}
    # Started through ``kiln.run -m mlx.launch``, ``import mlx.core`` is kiln.
    if "mlx.core" in sys.modules and getattr(sys.modules["mlx"], "__kiln_shim__", False):
        import mlx.core
        res["shim"] = np.array(mlx.core is mx)

    def to_mx(a):
        name = a.dtype.name
        return mx.array(a, dtype=mx.bool_ if name == "bool" else getattr(mx, name))

    # ---- every collective, several dtypes and shapes
    for op, dt, shape in cases(n):
        x = to_mx(case_input(dt, shape, r))
        y = getattr(d, op)(x)
        assert y.dtype == x.dtype, (op, dt)
        res[key(op, dt, shape)] = _save_float(y)

    # ---- groups from split: even and odd ranks
    sub = g.split(r % 2)
    res["split-info"] = np.array([sub.rank(), sub.size()])
    res["split-sum"] = np.array(d.all_sum(mx.array([float(r)]), group=sub))

    # ---- send/recv around the ring (even ranks send first, so no one waits on a send)
    right, left = (r + 1) % n, (r - 1) % n
    mine = mx.arange(6, dtype=mx.float32).reshape(2, 3) * (r + 1)
    if r % 2 == 0:
        mx.eval(d.send(mine, right))
        got = d.recv_like(mine, left)
    else:
        got = d.recv((2, 3), mx.float32, left)
        mx.eval(got)
        mx.eval(d.send(mine, right))
    res["ring"] = np.array(got)

    # ---- send/recv under compile (a message per call) and under vmap (batch first)
    base = mx.arange(6, dtype=mx.float32).reshape(2, 3)
    if r == 0:
        send_c = mx.compile(lambda a: d.send(a * 2, 1))
        for k in range(2):
            mx.eval(send_c(base + k))
        mx.eval(mx.vmap(lambda a: d.send(a, 1), in_axes=1)(base))
    elif r == 1:
        recv_c = mx.compile(lambda a: d.recv_like(a, 0) + 1)
        res["compiled-recv"] = np.stack([np.array(recv_c(base)) for _ in range(2)])
        res["vmapped-recv"] = np.array(mx.vmap(lambda a: d.recv_like(a, 0), in_axes=1)(base))

    # ---- gradients, jvp, vmap, compile through the collectives
    x = mx.array(case_input("float32", (2 * n, 3), r))
    w = mx.array(case_input("float32", (2 * n, 3), 100 + r))
    for op in OPS:
        f = getattr(d, op)

        def loss(a, f=f):
            y = f(a)
            return (y * mx.arange(y.size, dtype=mx.float32).reshape(y.shape)).sum()

        res[f"grad-{op}"] = np.array(mx.grad(loss)(x))
        res[f"jvp-{op}"] = np.array(mx.jvp(f, [x], [w])[1][0])
        res[f"vmap-{op}"] = np.array(mx.vmap(f, in_axes=1, out_axes=1)(x))
        res[f"vmaploop-{op}"] = np.stack([np.array(f(x[:, j])) for j in range(3)], axis=1)
        res[f"compile-{op}"] = np.array(mx.compile(lambda a, f=f: f(a) * 2 + 1)(x))
        res[f"grad-compile-{op}"] = np.array(mx.grad(mx.compile(loss))(x))

    # ---- data-parallel training: each rank trains on its slice of the batch
    xs, ys = mlp_data()
    part = slice(r * len(xs) // n, (r + 1) * len(xs) // n)
    for size in (0, 64, 32 * 1024**2):  # per-array, small buckets, one bucket
        model = train_mlp(mx, nn, optim, xs[part], ys[part],
                          average=lambda gr, s=size: nn.average_gradients(gr, all_reduce_size=s))
        for k, v in tree_flatten(model.parameters()):
            res[f"dp{size}-{k}"] = np.array(v)

    # ---- sharded layers against the unsharded ones
    mx.random.seed(3)
    lin = nn.Linear(8, 4 * n)
    xin = mx.array(np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32))
    for segs in (1, 2, [0.5]):
        tag = str(segs).replace(" ", "")
        a2s = nn.AllToShardedLinear.from_linear(lin, segments=segs)
        res[f"a2s{tag}"] = np.array(a2s(xin))
        res[f"a2s-grad{tag}"] = np.array(mx.grad(lambda v: a2s(v).sum())(xin))
    mx.random.seed(31)
    lin2 = nn.Linear(4 * n, 5)
    xin2 = mx.array(np.random.default_rng(6).standard_normal((3, 4 * n)).astype(np.float32))
    cols = slice(r * 4, (r + 1) * 4)
    s2a = nn.ShardedToAllLinear.from_linear(lin2)
    res["s2a"] = np.array(s2a(xin2[:, cols]))
    s2 = nn.shard_linear(lin2, "sharded-to-all")
    res["shard_linear"] = np.array(s2(xin2[:, cols]))
    # The pair of them: a tensor-parallel MLP equal to the plain one.
    a = nn.shard_linear(lin, "all-to-sharded")
    mx.random.seed(32)
    lin3 = nn.Linear(4 * n, 3)
    b = nn.shard_linear(lin3, "sharded-to-all")
    res["tp-mlp"] = np.array(b(mx.tanh(a(xin))))
    # shard_inplace on a Sequential: the shards of every parameter
    mx.random.seed(4)
    seq = nn.Sequential(nn.Linear(6, 2 * n), nn.Linear(2 * n, 2 * n))
    nn.shard_inplace(seq.layers[0], "all-to-sharded")
    nn.shard_inplace(seq.layers[1], "sharded-to-all")
    for k, v in tree_flatten(seq.parameters()):
        res[f"inplace-{k}"] = np.array(v)
    # fully sharded MLP: same output; shard gradients are slices of the summed full gradient
    mx.random.seed(7)
    mlp = nn.Sequential(nn.Linear(4, 2 * n), nn.ReLU(), nn.Linear(2 * n, 2 * n))
    fs = nn.fully_shard(mlp)
    xf = mx.array(mlp_data()[0][:3])
    res["fsdp-out"] = np.array(fs(xf))
    _, gr = nn.value_and_grad(fs, lambda m, v: m(v).sum())(fs, xf)
    for k, v in tree_flatten(gr):
        res[f"fsdp-grad-{k}"] = np.array(v)
    for k, v in tree_flatten(fs.parameters()):
        res[f"fsdp-param-{k}"] = np.array(v)

    # ---- quantized sharded layers (where kiln has quantization)
    if hasattr(nn, "QuantizedLinear"):
        ql, xq = quantized_case(mx, nn, n)
        res["q-a2s"] = np.array(nn.shard_linear(ql, "all-to-sharded")(xq))
        res["q-s2a"] = np.array(nn.shard_linear(ql, "sharded-to-all")(xq[:, r * 64:(r + 1) * 64]))

    # ---- bad input: clear errors on every rank, and the group still works after
    def error_of(fn):
        try:
            mx.eval(fn())
        except (d.DistributedError, ValueError, TypeError) as e:
            return f"{type(e).__name__}: {e}"
        return None

    msgs["shape"] = error_of(lambda: d.all_sum(mx.zeros((3,) if r == 0 else (4,))))
    msgs["dtype"] = error_of(lambda: d.all_gather(mx.zeros((3,), dtype=mx.float32 if r else mx.int32)))
    msgs["order"] = error_of(lambda: d.all_sum(mx.zeros(3)) if r == 0 else d.all_max(mx.zeros(3)))
    msgs["send-outside"] = error_of(lambda: d.send(mx.zeros(3), n))
    msgs["recv-outside"] = error_of(lambda: d.recv((3,), mx.float32, -1))
    msgs["send-self"] = error_of(lambda: d.send(mx.zeros(3), r))
    if n >= 2 and r in (0, 1):  # rank 1 expects another shape than rank 0 sends
        if r == 0:
            msgs["recv-shape"] = error_of(lambda: d.send(mx.zeros((4,)), 1))
        else:
            msgs["recv-shape"] = error_of(lambda: d.recv((3,), mx.float32, 0))
    res["after-errors"] = np.array(d.all_sum(mx.array([1.0])))

    np.savez(os.path.join(out, f"rank{r}.npz"), **res)
    with open(os.path.join(out, f"rank{r}.json"), "w") as f:
        json.dump(msgs, f)


def run_faults(out: str) -> None:
    """Rank 2 hangs in a first group, then rank 1 dies: the others must say so."""
    import kiln.core as mx
    d = mx.distributed
    g = d.init()
    r = g.rank()
    d.set_timeout(1.0)
    msgs = {}
    mx.eval(d.all_sum(mx.ones(1)))  # everyone is up: the phases below start from here
    start = time.time()
    first = g.split(0)  # a group of its own, so its hung call does not touch the next
    t0 = time.monotonic()
    if r == 2:
        time.sleep(3.0)
    else:
        try:
            mx.eval(d.all_sum(mx.ones(3), group=first))
            msgs["hang"] = None
        except d.DistributedError as e:
            msgs["hang"] = str(e)
        msgs["hang-seconds"] = time.monotonic() - t0
    if r == 1:
        time.sleep(max(0.0, start + 3.6 - time.time()))
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(max(0.0, start + 4.0 - time.time()))
    t0 = time.monotonic()
    try:
        mx.eval(d.all_sum(mx.ones(3)))
        msgs["dead"] = None
    except d.DistributedError as e:
        msgs["dead"] = str(e)
    msgs["dead-seconds"] = time.monotonic() - t0
    with open(os.path.join(out, f"rank{r}.json"), "w") as f:
        json.dump(msgs, f)
    sys.stdout.flush()
    time.sleep(1.0)  # let the other survivor see only rank 1 gone
    os._exit(0)  # the hung group's call is still pending: skip MPI's finalize


if __name__ == "__main__":
    target = sys.argv[1]
    (run_faults if sys.argv[2:3] == ["faults"] else run_main)(target)
