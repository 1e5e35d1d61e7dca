"""The ops floor: every op of the ``mx`` namespace, gathered from one module per family.

Importing this package also attaches the array's operators and method forms: ``array`` (on the
graph floor) reaches its ops through the module reference ``kiln.graph.array._o``, set here.
Primitive rules reach these ops at rule time through ``kiln.primitives.base.ops``.
"""
from __future__ import annotations

import sys as _sys

from kiln.dtypes import (Dtype, DtypeCategory, bfloat16, bool_, complex64,  # noqa: F401
                         complexfloating, finfo, float16, float32, float64, floating, generic,
                         iinfo, inexact, int8, int16, int32, int64, integer, issubdtype, number,
                         signedinteger, uint8, uint16, uint32, uint64, unsignedinteger)
from kiln.graph import array as _array_mod
from kiln.graph.array import array

from kiln.ops.elementwise import *  # noqa: F401,F403
from kiln.ops.reduce import *  # noqa: F401,F403
from kiln.ops.creation import *  # noqa: F401,F403
from kiln.ops.shape import *  # noqa: F401, F403
from kiln.ops.products import *  # noqa: F401,F403
from kiln.ops.indexing import *  # noqa: F401,F403
from kiln.ops.conv import *  # noqa: F401,F403
from kiln.ops.io import *  # noqa: F401,F403
from kiln.ops.extras import *  # noqa: F401,F403
from kiln.ops.unique import *  # noqa: F401,F403
from kiln.ops.search import *  # noqa: F401,F403
from kiln.ops.quantized import *  # noqa: F401,F403
from kiln.ops import random  # noqa: F401
from kiln.ops import linalg  # noqa: F401
from kiln.ops.linalg import matrix_norm  # noqa: F401
from kiln.ops import fft  # noqa: F401
from kiln.ops import fast  # noqa: F401
from kiln.ops import methods as _methods

_methods.install(array, _sys.modules[__name__])
_array_mod._o = _sys.modules[__name__]
