"""``mx.export_function``, ``mx.import_function``, ``mx.exporter`` and ``mx.FunctionExporter``.

Exporting traces the function on data-less placeholders shaped like the
example arrays (``graph.trace_function``) and writes the traced graph in
kiln's own format (``kilnfmt``). Importing reads kiln's format or the files
the real MLX writes (``mlxfn``); the imported function picks the exported
signature that matches its arguments and replays it as ordinary kiln nodes.
"""
from __future__ import annotations

import os
from typing import Callable, Optional, Union

from . import kilnfmt, mlx_write, mlxfn
from .graph import describe_call, split_arguments, strip_copies, trace_function

__all__ = ["export_function", "import_function", "exporter", "FunctionExporter", "ImportedFunction",
           "export_mlx_function"]


def _check_metadata(metadata, callback: bool) -> str:
    if metadata is None:
        return ""
    if not isinstance(metadata, str):
        raise TypeError("[export_function] metadata must be a string, but received "
                        f"{type(metadata).__name__}.")
    if callback:
        raise ValueError("[export_function] metadata is only supported when exporting to a file.")
    return metadata


class FunctionExporter:
    """A context managing class for exporting several traces of one function to a file.

    Make one with ``mx.exporter``. Each call traces the function on its
    example arrays and rewrites the file (atomically) with every trace so far.
    """

    def __init__(self, file, fun: Callable, shapeless: bool = False, metadata: Optional[str] = None):
        self._file = os.fspath(file)
        self._fun = fun
        self._shapeless = bool(shapeless)
        self._metadata = _check_metadata(metadata, False)
        self._pool = kilnfmt.ConstantPool()
        self._traces: list = []
        self._closed = False

    def __call__(self, *args, **kwargs) -> None:
        """Trace the function on these example arrays and add the trace to the file."""
        if self._closed:
            raise RuntimeError("[export_function] Attempting to write after exporting is closed.")
        pos, kw = split_arguments(args, kwargs, "export_function")
        t = strip_copies(trace_function(self._fun, pos, kw, self._shapeless))
        self._traces.append(kilnfmt.trace_header(t, self._pool))
        kilnfmt.write(self._file, self._traces, self._pool, self._shapeless, self._metadata)

    def close(self) -> None:
        """Finish the export; later calls raise RuntimeError."""
        self._closed = True
        self._fun = None  # do not keep the function (and what it closes over) alive

    def __enter__(self) -> "FunctionExporter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def exporter(file, fun: Callable, *, shapeless: bool = False,
             metadata: Optional[str] = None) -> FunctionExporter:
    """Make a callable object to export several traces of a function to one file.

    Args:
        file: Path of the file to write.
        fun: The function to export.
        shapeless: Whether the imported function accepts inputs of other
            shapes (same ranks and dtypes). Default: ``False``.
        metadata: A string saved alongside the function.

    Returns:
        A ``FunctionExporter``; call it with example arrays, use it as a
        context manager (``with mx.exporter(path, fun) as ex: ex(x)``).
    """
    return FunctionExporter(file, fun, shapeless, metadata)


def export_function(file_or_callback: Union[str, os.PathLike, Callable], fun: Callable, *args,
                    shapeless: bool = False, metadata: Optional[str] = None, **kwargs) -> None:
    """Export a function traced on example arrays.

    The example inputs are ``*args`` and ``**kwargs`` of arrays, or one
    tuple/list of arrays and/or one dict of string keys to arrays. Arrays the
    function closes over become constants in the file.

    Args:
        file_or_callback: A file path, or a callable receiving the traced
            graph as dicts (``type`` is ``"inputs"``, ``"keyword_inputs"``,
            ``"outputs"``, ``"constants"`` or ``"primitive"``), with MLX's
            primitive names and arguments.
        fun: The function: arrays in, one array or a tuple/list of arrays out.
        *args: Example positional arrays.
        shapeless: Whether the imported function accepts other shapes of the
            same ranks. Default: ``False``.
        metadata: A string saved alongside the function (files only).
        **kwargs: Example keyword arrays.

    Raises:
        ValueError: for inputs or outputs that are not arrays as above, or
            ``metadata`` with a callback.
        TypeError: if ``metadata`` is not a string.
    """
    is_cb = callable(file_or_callback) and not isinstance(file_or_callback, (str, os.PathLike))
    md = _check_metadata(metadata, is_cb)
    if is_cb:
        pos, kw = split_arguments(args, kwargs, "export_function")
        t = strip_copies(trace_function(fun, pos, kw, shapeless))
        mlxfn.emit_callback(t, file_or_callback)
        return
    ex = FunctionExporter(file_or_callback, fun, shapeless, md)
    try:
        ex(*args, **kwargs)
    finally:
        ex.close()


def export_mlx_function(file, fun: Callable, *args, metadata: Optional[str] = None, **kwargs) -> None:
    """Export a function in MLX's ``.mlxfn`` format, for the real MLX's ``mx.import_function``.

    Same arguments as ``export_function`` (without ``shapeless``). The traced
    primitives must have MLX counterparts in kiln's writer (elementwise,
    reductions, scans, shapes, slices, concatenate, pad, matmul, convolution,
    sorting, random bits, searchsorted, gathers and scatters); otherwise a
    ValueError names the primitive and nothing is written.
    """
    md = _check_metadata(metadata, False)
    pos, kw = split_arguments(args, kwargs, "export_mlx_function")
    t = strip_copies(trace_function(fun, pos, kw, False))
    mlx_write.write(file, [t], md)


class ImportedFunction:
    """A function read from a file: call it with arrays; it returns a tuple of arrays."""

    def __init__(self, path: str, traces: list, shapeless: bool, metadata: str, fmt: str):
        self._path = path
        self.traces: list = traces
        self.shapeless = shapeless
        self.metadata = metadata
        self.format = fmt

    def __call__(self, *args, **kwargs) -> tuple:
        pos, kw = split_arguments(args, kwargs, "import_function::call")
        for t in self.traces:
            if t.matches(pos, kw):
                return tuple(t.replay(pos, kw))
        lines = ["[import_function::call] No imported function found which matches the given "
                 "positional and keyword arguments. Possible functions include:"]
        for k, t in enumerate(self.traces):
            lines.append(f" {k + 1}. {t.describe()}")
        lines.append("")
        lines.append(describe_call(pos, kw))
        raise ValueError("\n".join(lines) + "\n")

    def __repr__(self) -> str:
        return f"<kiln imported function from {self._path!r}: {len(self.traces)} trace(s)>"


def import_function(file, return_metadata: bool = False):
    """Import a function exported by kiln or by MLX (``.mlxfn``).

    Args:
        file: The file path.
        return_metadata: Also return the metadata string saved with it.

    Returns:
        The imported function (it returns a tuple of arrays), or
        ``(function, metadata)`` when ``return_metadata`` is True.

    Raises:
        RuntimeError: if the file cannot be opened.
        ValueError: if the file is not a valid export (the message names the
            file and what is wrong), or uses an MLX primitive kiln lacks.
    """
    path = os.fspath(file)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise RuntimeError(f"[import_function] Failed to open {path} ({e.strerror}).") from None
    if kilnfmt.is_kiln_file(blob):
        traces, shapeless, metadata = kilnfmt.read(path, blob)
        fmt = "kiln"
    elif mlxfn.looks_like_mlx(blob):
        traces, shapeless, metadata = mlxfn.read(path, blob)
        fmt = "mlx"
    else:
        raise kilnfmt._err(path, "not a function export (neither kiln's format nor MLX's .mlxfn).")
    fn = ImportedFunction(path, traces, shapeless, metadata, fmt)
    return (fn, metadata) if return_metadata else fn

