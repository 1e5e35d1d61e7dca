"""mx.distributed, kiln.launch and the distributed nn layers.

The multi-process tests start ``tests/distributed_worker.py`` under
``python -m kiln.launch`` with 2 and 4 processes on the CPU (oversubscribed)
and check what every rank saved against NumPy and against single-process
kiln. The GPU tests (NCCL) skip without CuPy and a GPU.
"""
from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kiln.core as mx
import kiln.nn as nn
import kiln.optimizers as optim
from kiln import launch
from kiln.utils import tree_flatten

sys.path.insert(0, os.path.dirname(__file__))
import distributed_worker as W  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")
HAS_MPI = importlib.util.find_spec("mpi4py") is not None and launch.find_mpirun() is not None
needs_mpi = pytest.mark.skipif(not HAS_MPI, reason="mpi4py and an MPI runtime (pip install 'kiln[distributed]')")
d = mx.distributed


def _launch(n: int, out, mode: str = "main", timeout: float = 20.0, via_mlx: bool = False):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    # via_mlx: MLX's spelling, ``python -m kiln.run -m mlx.launch``, which runs the
    # processes under the shim.
    head = ["kiln.run", "-m", "mlx.launch"] if via_mlx else ["kiln.launch"]
    cmd = [sys.executable, "-m", *head, "-n", str(n), "--timeout", str(timeout),
           WORKER, str(out), mode]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


class Run:
    """The saved results of one launch: ``res[r][key]`` and ``msgs[r][key]``."""

    def __init__(self, n, out):
        self.n = n
        self.res = [dict(np.load(out / f"rank{r}.npz")) for r in range(n)]
        self.msgs = [json.load(open(out / f"rank{r}.json")) for r in range(n)]


@pytest.fixture(scope="module", params=[2, 4])
def run(request, tmp_path_factory):
    if not HAS_MPI:
        pytest.skip("mpi4py and an MPI runtime are not installed")
    n = request.param
    # One launch per size for the whole session, even when pytest-xdist spreads
    # these tests over several workers: they share the base temp folder's parent.
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    out = root / f"kiln-dist{n}"
    with open(root / f"kiln-dist{n}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "status.json").exists():
            out.mkdir(exist_ok=True)
            p = _launch(n, out, via_mlx=n == 2)
            (out / "status.json").write_text(json.dumps(
                {"rc": p.returncode, "log": p.stdout[-3000:] + p.stderr[-3000:]}))
    status = json.loads((out / "status.json").read_text())
    assert status["rc"] == 0, status["log"]
    return Run(n, out)


def test_launched_through_mlx_launch_under_the_shim(run):
    """The 2-process run was started as ``python -m kiln.run -m mlx.launch``."""
    for r in range(run.n):
        assert ("shim" in run.res[r]) == (run.n == 2)
        if run.n == 2:
            assert bool(run.res[r]["shim"])


# ---------------------------------------------------------------- references
def _inputs(dt, shape, n):
    return [W.case_input(dt, shape, r) for r in range(n)]


def _expected(op, dt, shape, n, r):
    xs = np.stack([a.astype(np.float64) if dt in ("float16", "bfloat16") else a
                   for a in _inputs(dt, shape, n)])
    if dt == "bool":
        red = {"all_sum": xs.any(0), "all_max": xs.any(0), "all_min": xs.all(0)}
    else:
        red = {"all_sum": xs.sum(0), "all_max": xs.max(0), "all_min": xs.min(0)}
    if op in red:
        return red[op]
    if op == "all_gather":
        return xs.reshape((-1,) + xs.shape[2:]) if xs.ndim > 1 else xs
    total = xs.any(0) if dt == "bool" else xs.sum(0)
    c = shape[0] // n
    return total[r * c:(r + 1) * c]


def _cast(a, dt):
    if dt == "bfloat16":
        return a.astype(np.float32)
    return a.astype(dt)


def test_collectives_against_numpy(run):
    n = run.n
    for op, dt, shape in W.cases(n):
        for r in range(n):
            got = run.res[r][W.key(op, dt, shape)]
            want = _cast(_expected(op, dt, shape, n, r), dt)
            assert got.dtype == want.dtype and got.shape == want.shape, (op, dt, shape, r)
            np.testing.assert_array_equal(got, want, err_msg=f"{op} {dt} {shape} rank {r}")


def test_split_and_ring(run):
    n = run.n
    for r in range(n):
        same = [s for s in range(n) if s % 2 == r % 2]
        np.testing.assert_array_equal(run.res[r]["split-info"], [same.index(r), len(same)])
        np.testing.assert_array_equal(run.res[r]["split-sum"], [float(sum(same))])
        left = (r - 1) % n
        np.testing.assert_array_equal(run.res[r]["ring"],
                                      np.arange(6, dtype=np.float32).reshape(2, 3) * (left + 1))


def test_send_recv_under_compile_and_vmap(run):
    base = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(run.res[1]["compiled-recv"], np.stack([base * 2 + 1, (base + 1) * 2 + 1]))
    np.testing.assert_array_equal(run.res[1]["vmapped-recv"], base.T)


def _share(xs, op):
    ext = xs.max(0) if op == "all_max" else xs.min(0)
    hit = (xs == ext).astype(np.float32)
    return hit / hit.sum(0)


def test_rules_through_collectives(run):
    """grad, jvp, vmap and compile of every collective (the program's objective
    is the sum over ranks, so cotangents arriving from every rank add up)."""
    n = run.n
    shape = (2 * n, 3)
    xs = np.stack([W.case_input("float32", shape, r) for r in range(n)])
    ws = np.stack([W.case_input("float32", shape, 100 + r) for r in range(n)])
    c = shape[0] // n
    for r in range(n):
        res = run.res[r]
        fwd = {op: _expected(op, "float32", shape, n, r).astype(np.float32) for op in W.OPS}
        cot = {op: np.arange(v.size, dtype=np.float32).reshape(v.shape) for op, v in fwd.items()}
        grads = {
            "all_sum": n * cot["all_sum"],
            "all_gather": n * cot["all_gather"][r * shape[0]:(r + 1) * shape[0]],
            "sum_scatter": np.concatenate([cot["sum_scatter"]] * n),
            "all_max": n * cot["all_max"] * _share(xs, "all_max")[r],
            "all_min": n * cot["all_min"] * _share(xs, "all_min")[r],
        }
        jvps = {
            "all_sum": ws.sum(0),
            "all_gather": ws.reshape(-1, 3),
            "sum_scatter": ws.sum(0)[r * c:(r + 1) * c],
            "all_max": (ws * _share(xs, "all_max")).sum(0),
            "all_min": (ws * _share(xs, "all_min")).sum(0),
        }
        for op in W.OPS:
            np.testing.assert_allclose(res[f"grad-{op}"], grads[op], rtol=1e-6, err_msg=op)
            np.testing.assert_allclose(res[f"grad-compile-{op}"], grads[op], rtol=1e-6, err_msg=op)
            np.testing.assert_allclose(res[f"jvp-{op}"], jvps[op], rtol=1e-6, err_msg=op)
            np.testing.assert_array_equal(res[f"vmap-{op}"], res[f"vmaploop-{op}"], err_msg=op)
            np.testing.assert_allclose(res[f"compile-{op}"], fwd[op] * 2 + 1, rtol=1e-6, err_msg=op)


def test_data_parallel_training_equals_one_process(run):
    xs, ys = W.mlp_data()
    whole = W.train_mlp(mx, nn, optim, xs, ys)
    want = dict(tree_flatten(whole.parameters()))
    for r in range(run.n):
        for size in (0, 64, 32 * 1024**2):
            for k, v in want.items():
                np.testing.assert_allclose(run.res[r][f"dp{size}-{k}"], np.array(v), rtol=1e-5,
                                           atol=1e-6, err_msg=f"rank {r} bucket {size} {k}")


def test_sharded_layers_equal_unsharded(run):
    n = run.n
    mx.random.seed(3)
    lin = nn.Linear(8, 4 * n)
    xin = np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)
    full = np.array(lin(mx.array(xin)))
    grad_full = np.array(mx.grad(lambda v: lin(v).sum())(mx.array(xin)))
    mx.random.seed(31)
    lin2 = nn.Linear(4 * n, 5)
    xin2 = np.random.default_rng(6).standard_normal((3, 4 * n)).astype(np.float32)
    full2 = np.array(lin2(mx.array(xin2)))
    mx.random.seed(32)
    lin3 = nn.Linear(4 * n, 3)
    tp = np.array(lin3(mx.tanh(lin(mx.array(xin)))))
    mx.random.seed(4)
    seq = nn.Sequential(nn.Linear(6, 2 * n), nn.Linear(2 * n, 2 * n))
    seq_params = {k: np.array(v) for k, v in tree_flatten(seq.parameters())}
    mx.random.seed(7)
    mlp = nn.Sequential(nn.Linear(4, 2 * n), nn.ReLU(), nn.Linear(2 * n, 2 * n))
    xf = mx.array(W.mlp_data()[0][:3])
    fs_out = np.array(mlp(xf))
    _, fs_grads = nn.value_and_grad(mlp, lambda m, v: m(v).sum())(mlp, xf)
    fs_grads = {k: np.array(v) for k, v in tree_flatten(fs_grads)}
    fs_params = {k: np.array(v) for k, v in tree_flatten(mlp.parameters())}
    for r in range(n):
        res = run.res[r]
        for segs in ("1", "2", "[0.5]"):
            if segs == "1":
                cols = np.arange(4 * r, 4 * r + 4)
            else:  # two segments of 2n outputs, each sharded
                cols = np.concatenate([np.arange(2 * r, 2 * r + 2), 2 * n + np.arange(2 * r, 2 * r + 2)])
            np.testing.assert_allclose(res[f"a2s{segs}"], full[:, cols], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(res[f"a2s-grad{segs}"], grad_full, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res["s2a"], full2, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(res["shard_linear"], full2, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(res["tp-mlp"], tp, rtol=1e-5, atol=1e-5)
        rows = slice(2 * r, 2 * r + 2)
        np.testing.assert_array_equal(res["inplace-layers.0.weight"], seq_params["layers.0.weight"][rows])
        np.testing.assert_array_equal(res["inplace-layers.0.bias"], seq_params["layers.0.bias"][rows])
        np.testing.assert_array_equal(res["inplace-layers.1.weight"], seq_params["layers.1.weight"][:, rows])
        np.testing.assert_array_equal(res["inplace-layers.1.bias"], seq_params["layers.1.bias"])
        np.testing.assert_allclose(res["fsdp-out"], fs_out, rtol=1e-5, atol=1e-6)
        for k, v in fs_params.items():
            block = slice(r * v.shape[0] // n, (r + 1) * v.shape[0] // n)
            np.testing.assert_array_equal(res[f"fsdp-param-module.{k}"], v[block])
            np.testing.assert_allclose(res[f"fsdp-grad-module.{k}"], n * fs_grads[k][block],
                                       rtol=1e-5, atol=1e-5)


def test_quantized_sharded_layers_equal_unsharded(run):
    n = run.n
    ql, xq = W.quantized_case(mx, nn, n)
    full = np.array(ql(xq))
    for r in range(n):
        np.testing.assert_allclose(run.res[r]["q-a2s"], full[:, 4 * r:4 * r + 4], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(run.res[r]["q-s2a"], full, rtol=1e-4, atol=1e-4)


def test_bad_input_fails_on_every_rank(run):
    n = run.n
    for r in range(n):
        m = run.msgs[r]
        assert m["shape"].startswith("DistributedError: [all_sum]") and "rank 0 called all_sum of shape (3,)" in m["shape"] \
            and "rank 1 called all_sum of shape (4,)" in m["shape"], m["shape"]
        assert "dtype int32" in m["dtype"] and "dtype float32" in m["dtype"], m["dtype"]
        assert "rank 1 called all_max" in m["order"], m["order"]
        assert m["send-outside"] == f"ValueError: [send] Invalid destination={n} for a group of size {n}."
        assert m["recv-outside"] == f"ValueError: [recv] Invalid source=-1 for a group of size {n}."
        assert m["send-self"] == f"ValueError: [send] Rank {r} cannot send to itself."
        np.testing.assert_array_equal(run.res[r]["after-errors"], [float(n)])
    assert "[send] Rank 1 expected a different array" in run.msgs[0]["recv-shape"]
    assert "expected an array of shape (3,)" in run.msgs[1]["recv-shape"] \
        and "sent an array of shape (4,)" in run.msgs[1]["recv-shape"]


@needs_mpi
def test_hung_and_killed_ranks_are_named(tmp_path):
    p = _launch(3, tmp_path, mode="faults")
    assert not (tmp_path / "rank1.json").exists(), p.stdout + p.stderr  # it was killed
    # ... and the launcher says so (the survivors leave by os._exit, so they are listed too)
    assert p.returncode != 0 and "ranks 0, 1, 2 ended without exiting" in p.stderr, p.stderr[-2000:]
    for r in (0, 2):
        m = json.load(open(tmp_path / f"rank{r}.json"))
        assert "[all_sum]" in m["dead"] and "rank 1 " in m["dead"], m
        assert m["dead-seconds"] < 10, m
        if r == 0:
            assert "waited 1 s for rank 2 " in m["hang"], m
            assert m["hang-seconds"] < 10, m


# ---------------------------------------------------------------- one process
CASES_1 = ["all_sum", "all_max", "all_min", "all_gather", "sum_scatter"]


@pytest.mark.parametrize("op", CASES_1)
def test_singleton_collectives_are_identities(op):
    x = mx.arange(6, dtype=mx.float32).reshape(2, 3)
    assert getattr(d, op)(x) is x
    g = mx.grad(lambda a: getattr(d, op)(a).sum())(x)
    np.testing.assert_array_equal(np.array(g), np.ones((2, 3), np.float32))


def test_singleton_group_and_errors():
    g = d.init()
    assert (g.rank(), g.size()) == (0, 1) and d.init() is g
    assert d.is_available() and d.is_available("mpi") == (importlib.util.find_spec("mpi4py") is not None)
    assert not d.is_available("ring")
    x = mx.zeros(3)
    cases = [
        (lambda: d.send(x, 0), ValueError, "Cannot send to a singleton group"),
        (lambda: d.recv((3,), mx.float32, 0), ValueError, "Cannot recv from a singleton group"),
        (lambda: d.recv_like(x, 0), ValueError, "Cannot recv from a singleton group"),
        (lambda: g.split(0), RuntimeError, "Cannot split the distributed group further."),
        (lambda: d.init(backend="foo"), ValueError, "[distributed] The only valid values for backend"),
        (lambda: d.is_available("foo"), ValueError, "[distributed] The only valid values for backend"),
        (lambda: d.init(strict=True, backend="mpi"), RuntimeError, "Cannot initialize MPI"),
        (lambda: d.init(strict=True), RuntimeError, "distributed"),
        (lambda: d.all_sum(x, group="world"), TypeError, "[distributed] group must be a Group"),
        (lambda: d.set_timeout(0), ValueError, "[distributed] The timeout must be positive"),
    ]
    for fn, err, text in cases:
        with pytest.raises(err) as e:
            fn()
        assert text in str(e.value)


def test_module_paths():
    import kiln.core.distributed as a
    from kiln import distributed as b
    assert a is b is mx.distributed
    code = ("import kiln.mlx_shim; kiln.mlx_shim.install()\n"
            "import mlx.core as mx, mlx.core.distributed as dist\n"
            "from mlx.nn.layers.distributed import shard_linear\n"
            "assert dist is mx.distributed and dist.__name__ == 'kiln.distributed'\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


@pytest.mark.skipif(importlib.util.find_spec("mlx") is None, reason="mlx not installed")
def test_singleton_matches_mlx():
    import mlx.core as mlx_mx
    md = mlx_mx.distributed
    for backend in ("any", "jaccl"):  # kiln has no "ring" backend (MLX's own TCP ring)
        assert d.is_available(backend) == md.is_available(backend)
    for fn, args in [("send", (0,)), ("recv_like", (0,))]:
        msgs = []
        for mod, arr in ((md, mlx_mx.zeros(3)), (d, mx.zeros(3))):
            try:
                getattr(mod, fn)(arr, *args)
            except ValueError as e:
                msgs.append(str(e))
        assert len(msgs) == 2 and msgs[0] == msgs[1]
    with pytest.raises(ValueError) as a:
        md.init(backend="foo")
    with pytest.raises(ValueError) as b:
        d.init(backend="foo")
    assert str(a.value) == str(b.value)


def test_single_process_layers_and_average_gradients():
    mx.random.seed(1)
    lin = nn.Linear(4, 6)
    x = mx.random.normal((2, 4))
    for layer in (nn.AllToShardedLinear.from_linear(lin), nn.ShardedToAllLinear.from_linear(lin),
                  nn.shard_linear(lin, "all-to-sharded", segments=3)):
        np.testing.assert_allclose(np.array(layer(x)), np.array(lin(x)), rtol=1e-6)
    assert nn.fully_shard(lin) is lin
    grads = {"a": mx.ones(3), "b": [mx.zeros((2, 2))]}
    assert nn.average_gradients(grads) is grads
    with pytest.raises(ValueError, match="Sharding type sharding='foo' not supported"):
        nn.shard_linear(lin, "foo")
    with pytest.raises(ValueError, match="only Linear and QuantizedLinear"):
        nn.shard_linear(nn.Conv1d(2, 2, 1), "all-to-sharded")
    assert repr(nn.AllToShardedLinear(4, 8)) == "AllToShardedLinear(input_dims=4, output_dims=8, bias=True)"


def test_single_process_quantized_sharded_layers():
    ql, xq = W.quantized_case(mx, nn, 1)
    want = np.array(ql(xq))
    for sharding in ("all-to-sharded", "sharded-to-all"):
        layer = nn.shard_linear(ql, sharding)
        assert type(layer).__name__.startswith("Quantized")
        np.testing.assert_allclose(np.array(layer(xq)), want, rtol=1e-5, atol=1e-5)
        assert set(tree_flatten(layer.trainable_parameters())[0][0].split(".")[:1]) == {"bias"}
    assert repr(nn.QuantizedShardedToAllLinear(64, 8)) == (
        "QuantizedShardedToAllLinear(input_dims=64, output_dims=8, bias=True, group_size=64, bits=4, "
        "mode=affine)")


# ---------------------------------------------------------------- launcher
def test_launcher_command_line(tmp_path):
    args = launch.parse_args(["-n", "4", "--timeout", "3", "train.py", "--lr", "0.1"])
    env = launch._environment(args)
    cmd = launch.build_command(args, env, "/x/bin/mpirun")
    assert cmd[:1] == ["/x/bin/mpirun"]
    i = cmd.index("-n")
    assert cmd[i + 1] == "4" and "--oversubscribe" in cmd
    assert cmd[-3:] == ["train.py", "--lr", "0.1"] and cmd[-4] == args.python
    assert env["NCCL_NVLS_ENABLE"] == "0" and env["KILN_DISTRIBUTED_TIMEOUT"] == "3.0"
    args = launch.parse_args(["-n", "2", "--backend", "nccl", "--hosts", "a,b", "-m", "pkg.train"])
    env = launch._environment(args)
    assert env["KILN_DISTRIBUTED_BACKEND"] == "nccl" and env["KILN_COORDINATOR"].startswith("a:")
    cmd = launch.build_command(args, env, "/x/bin/mpirun")
    assert cmd[cmd.index("--host") + 1] == "a:2,b:2" and cmd[cmd.index("-n") + 1] == "4"
    assert cmd[-2:] == ["-m", "pkg.train"]
    args = launch.parse_args(["--mlx", "t.py", "-v"])
    assert launch._child_argv(args) == [args.python, "-m", "kiln.run", "t.py", "-v"]
    hostfile = tmp_path / "hosts.txt"
    hostfile.write_text("# two machines\nnode1 slots=2\nnode2 slots=2\n")
    args = launch.parse_args(["--hostfile", str(hostfile), "--backend", "nccl", "--cwd", "/w", "x.py"])
    env = launch._environment(args)
    assert env["KILN_COORDINATOR"].startswith("node1:")
    cmd = launch.build_command(args, env, "/x/bin/mpirun")
    assert cmd[cmd.index("--hostfile") + 1] == str(hostfile) and cmd[cmd.index("--wdir") + 1] == "/w"
    assert "--oversubscribe" not in cmd


@pytest.mark.parametrize("tools, ulfm", [(("ompi_info", "prterun"), True), (("ompi_info",), False)])
def test_launcher_asks_ulfm_only_of_open_mpi_5(tmp_path, tools, ulfm):
    # Open MPI 5 ships prterun and knows --with-ft; a 4.x mpirun (as in many
    # distributions' /usr/bin) refuses the option, so it must not be passed.
    for name in ("mpirun",) + tools:
        (tmp_path / name).write_text("")
    args = launch.parse_args(["-n", "2", "train.py"])
    cmd = launch.build_command(args, launch._environment(args), str(tmp_path / "mpirun"))
    assert ("--with-ft" in cmd) == ulfm
    assert "-x" in cmd  # both versions forward the environment


# ---------------------------------------------------------------- GPU (NCCL)
def _gpu():
    from kiln.backend import cuda
    return cuda.available()


needs_gpu = pytest.mark.skipif(not _gpu(), reason="needs CuPy and an NVIDIA GPU")


@needs_gpu
def test_nccl_group_of_one():
    """NCCL collectives on a real communicator of one rank, on GPU and host buffers."""
    import cupy
    from kiln.distributed import _nccl
    assert d.is_available("nccl")
    comm = _nccl.from_environment()
    assert (comm.rank, comm.size) == (0, 1)
    for dt in ("float32", "float16", "int32", "int8", "uint8", "bool", "complex64", "float64"):
        for shape in [(), (5,), (4, 3)]:
            host = W.case_input(dt, shape, 0)
            dev = cupy.asarray(host)
            for op in ("sum", "max", "min"):
                if dt == "complex64" and op != "sum":
                    continue
                np.testing.assert_array_equal(comm.all_reduce(cupy, dev, op).get(), host)
                np.testing.assert_array_equal(comm.all_reduce(np, host, op), host)
            want = host.reshape((1,)) if not shape else host
            np.testing.assert_array_equal(comm.all_gather(cupy, dev).get(), want)
            if shape:
                np.testing.assert_array_equal(comm.sum_scatter(cupy, dev).get(), host)


@needs_gpu
@needs_mpi
def test_gpu_arrays_through_mpi(tmp_path):
    """GPU arrays in collectives on the MPI backend (copied through the host)."""
    script = tmp_path / "gpu_mpi.py"
    script.write_text(
        "import kiln.core as mx, numpy as np\n"
        "g = mx.distributed.init(backend='mpi')\n"
        "x = mx.add(mx.arange(6, dtype=mx.float32, stream=mx.gpu), g.rank(), stream=mx.gpu)\n"
        "y = mx.distributed.all_sum(x, stream=mx.gpu)\n"
        "z = mx.distributed.all_gather(x, stream=mx.gpu)\n"
        "mx.eval(y, z)\n"
        "assert np.array_equal(np.array(y), 2 * np.arange(6) + 1)\n"
        "assert np.array_equal(np.array(z), np.concatenate([np.arange(6), np.arange(6) + 1]))\n"
        "print('ok', g.rank(), flush=True)\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "kiln.launch", "-n", "2", str(script)], env=env,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert p.stdout.count("ok") == 2


@needs_gpu
def test_nccl_two_ranks_when_two_gpus(tmp_path):
    import cupy
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs (NCCL refuses two ranks on one GPU)")
    script = tmp_path / "nccl2.py"
    script.write_text(
        "import kiln.core as mx, numpy as np\n"
        "g = mx.distributed.init(backend='nccl')\n"
        "assert g.backend == 'nccl' and g.size() == 2\n"
        "x = mx.add(mx.arange(8, dtype=mx.float32, stream=mx.gpu), g.rank(), stream=mx.gpu)\n"
        "s, a, r = mx.distributed.all_sum(x), mx.distributed.all_gather(x), mx.distributed.sum_scatter(x)\n"
        "assert np.array_equal(np.array(s), 2 * np.arange(8) + 1)\n"
        "assert np.array_equal(np.array(a), np.concatenate([np.arange(8), np.arange(8) + 1]))\n"
        "assert np.array_equal(np.array(r), (2 * np.arange(8) + 1)[g.rank() * 4:(g.rank() + 1) * 4])\n"
        "gr = mx.grad(lambda v: mx.distributed.all_sum(v).sum())(x)\n"
        "assert np.array_equal(np.array(gr), np.full(8, 2.0))\n"
        "print('ok', flush=True)\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "kiln.launch", "-n", "2", "--backend", "nccl",
                        str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert p.stdout.count("ok") == 2
