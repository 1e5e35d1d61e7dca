"""``mx.compile``: trace a function once, simplify and fuse its graph, replay it.

The first call with a given input signature traces the function on
data-less placeholders; the plan for that signature is built by one module
per stage:

1. ``trace``: the tape between the placeholders and the outputs; closed-over
   lazy values folded;
2. ``passes``: value numbering with equal small constants merged, no-ops
   dropped (``Primitive.is_noop``), common subexpressions computed once, dead
   steps removed;
3. ``fusion``: elementwise steps grouped into DAGs with several outputs
   (``Primitive.expr`` templates, ``Primitive.fusable``);
4. ``emit``: each group rendered to one kernel for its backend (numba loops on
   the CPU, ``backend/cpu_kernels.py``), falling back to its unfused steps;
5. ``run``: the replay as one straight-line Python function.

``plan`` ties the stages together and keeps the traced graph, ``primitive``
holds ``Compiled`` (whose vjp/jvp/vmap replay that graph, so
``grad(compile(f))``, ``vmap(compile(f))`` and ``compile(grad(f))`` work) and
``api`` the user-facing wrapper and its cache of plans.

Semantics to know (as in MLX):

* Arrays the function closes over are captured at trace time: later calls
  use the array objects seen while tracing, even if the Python variable is
  rebound. Pass changing arrays as arguments, or through ``inputs=``.
* Python side effects (prints, appends, Python control flow on shapes) run
  only while tracing. Evaluating a traced value (``.item()``, ``print``,
  ``if x > 0``) inside the function raises an error.
* With ``shapeless=True``, Python values computed from shapes while tracing
  (``x.shape[0]``, ``reshape`` targets) are frozen; where a replay on new
  shapes cannot be valid the call raises instead of returning a wrong answer.
"""
from __future__ import annotations

from kiln.transforms.compile.api import compile, disable_compile, enable_compile  # noqa: A004
from kiln.transforms.compile.fusion import options, set_fusion

__all__ = ["compile", "disable_compile", "enable_compile", "options", "set_fusion"]
