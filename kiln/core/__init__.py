"""The ``mx`` namespace: ``import kiln.core as mx``. Re-exports only.

Every name is implemented on a floor below (``kiln/dtypes.py``, ``kiln/device.py``,
``kiln/graph/``, ``kiln/ops/``, ``kiln/transforms/``); see ``docs/architecture.md``.
"""
from __future__ import annotations

import sys as _sys

from kiln.device import (Device, DeviceType, Stream, clear_cache, cpu, default_device,  # noqa: F401
                         default_stream, get_active_memory, get_cache_memory, get_peak_memory,
                         gpu, is_available, new_stream, reset_peak_memory, set_cache_limit,
                         set_default_device, set_default_stream, set_memory_limit,
                         set_wired_limit, stream, synchronize)
from kiln.dtypes import (Dtype, DtypeCategory, bfloat16, bool_, complex64,  # noqa: F401
                         complexfloating, finfo, float16, float32, float64, floating, generic,
                         iinfo, inexact, int8, int16, int32, int64, integer, issubdtype, number,
                         signedinteger, uint8, uint16, uint32, uint64, unsignedinteger)
from kiln.graph.array import ArrayIterator, array  # noqa: F401
from kiln.graph.evaluation import async_eval, eval  # noqa: F401
from kiln.graph.printing import (PrintOptions, get_printoptions, printoptions,  # noqa: F401
                                 set_printoptions)
from kiln.ops import *  # noqa: F401,F403
from kiln.ops import fast, fft, linalg, random  # noqa: F401
from kiln.ops.constants import e, euler_gamma, inf, nan, newaxis, pi  # noqa: F401
from kiln.ops.indexing import _AtIndexer as ArrayAt  # noqa: F401
from kiln.transforms import *  # noqa: F401,F403
# nn.Module reports its calls to checkpoint(fun, interval=k) through this (nn sees only kiln.core).
from kiln.transforms.checkpoint import module_call as _checkpoint_module_call  # noqa: F401
from kiln.export import (FunctionExporter, export_function, export_to_dot, exporter,  # noqa: F401
                         import_function)
from kiln.core import cuda, metal  # noqa: F401,E402
from kiln import __version__  # noqa: F401,E402
from kiln import distributed  # noqa: F401,E402  (mx.distributed)
from kiln.graph import array as _array_mod  # noqa: E402

_sys.modules[__name__ + ".distributed"] = distributed  # import kiln.core.distributed, as in MLX
_array_mod._namespace = _sys.modules[__name__]  # what array.__array_namespace__() returns
