"""Function transformations: grad, vjp, jvp, vmap, custom_function, checkpoint, compile,
and structured control flow (cond, switch, while_loop, fori_loop, scan)."""
from kiln.transforms.custom import checkpoint, custom_function, depends
from kiln.transforms.grad import grad, jacrev, value_and_grad, vjp
from kiln.transforms.jvp import hessian, jacfwd, jvp
from kiln.transforms.vmap import vmap
from kiln.transforms.compile import compile, disable_compile, enable_compile
from kiln.transforms.control_flow import cond, fori_loop, scan, switch, while_loop

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "vmap", "custom_function", "checkpoint", "depends",
           "jacrev", "jacfwd", "hessian", "compile", "disable_compile", "enable_compile",
           "cond", "switch", "while_loop", "fori_loop", "scan"]
