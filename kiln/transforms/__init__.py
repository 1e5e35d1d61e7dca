"""Function transformations: grad, vjp, jvp, vmap, custom_function, checkpoint, compile,
and structured control flow (cond, switch, while_loop, fori_loop, scan)."""
# The submodule first: loading it binds kiln.transforms.checkpoint to the module, and the
# function imported next must win that name (mx.checkpoint and kiln.transforms.checkpoint alike).
import kiln.transforms.checkpoint as _checkpoint_module  # noqa: F401
from kiln.transforms.custom import checkpoint, custom_function, depends
from kiln.transforms.grad import grad, jacrev, value_and_grad, vjp
from kiln.transforms.jvp import hessian, jacfwd, jvp
from kiln.transforms.vmap import vmap
from kiln.transforms.compile import compile, disable_compile, enable_compile
from kiln.transforms.control_flow import cond, fori_loop, scan, switch, while_loop

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "vmap", "custom_function", "checkpoint", "depends",
           "jacrev", "jacfwd", "hessian", "compile", "disable_compile", "enable_compile",
           "cond", "switch", "while_loop", "fori_loop", "scan"]
