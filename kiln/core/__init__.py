"""The ``mx`` namespace: ``import kiln.core as mx``.

Each part of the API lives in its own module; this file gathers their
public names, attaches the array's method forms, and adds the small
top-level functions (``eval``, constants, device and memory functions).
"""
from __future__ import annotations

import math as _math
import sys as _sys

from . import array as _array_mod
from .array import array
from .device import (Device, DeviceType, Stream, clear_cache, cpu, default_device,
                     default_stream, get_active_memory, get_cache_memory, get_peak_memory,
                     gpu, is_available, new_stream, reset_peak_memory, set_cache_limit,
                     set_default_device, set_default_stream, set_memory_limit,
                     set_wired_limit, stream, synchronize)
from .dtypes import (Dtype, DtypeCategory, bfloat16, bool_, complex64, complexfloating,
                     finfo, float16, float32, float64, floating, generic, iinfo, inexact,
                     int8, int16, int32, int64, integer, issubdtype, number, signedinteger,
                     uint8, uint16, uint32, uint64, unsignedinteger)

_array_mod._o = _sys.modules[__name__]

from .ops import *  # noqa: E402,F401,F403
from .shape_ops import *  # noqa: E402,F401,F403
from .products import *  # noqa: E402,F401,F403
from .indexing import *  # noqa: E402,F401,F403
from .conv import *  # noqa: E402,F401,F403
from .io import *  # noqa: E402,F401,F403
from .extras import *  # noqa: E402,F401,F403
from ..ops.quantized import *  # noqa: E402,F401,F403
from .evaluation import async_eval, eval  # noqa: E402,F401
from . import random  # noqa: E402,F401
from . import linalg  # noqa: E402,F401
from .linalg import matrix_norm  # noqa: E402,F401
from . import fft  # noqa: E402,F401
from . import fast  # noqa: E402,F401
from . import metal, cuda  # noqa: E402,F401
from ..transforms import *  # noqa: E402,F401,F403

from . import _methods  # noqa: E402

_methods.install(array, _sys.modules[__name__])
ArrayAt = _AtIndexer  # noqa: F405

pi = _math.pi
e = _math.e
euler_gamma = 0.5772156649015329
inf = float("inf")
nan = float("nan")
newaxis = None
