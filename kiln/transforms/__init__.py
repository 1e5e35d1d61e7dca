"""Function transformations: grad, vjp, jvp, vmap, custom_function, checkpoint, compile."""
from kiln.transforms.custom import checkpoint, custom_function, depends
from kiln.transforms.grad import grad, jacrev, value_and_grad, vjp
from kiln.transforms.jvp import hessian, jacfwd, jvp
from kiln.transforms.vmap import vmap
from kiln.transforms.compile import compile, disable_compile, enable_compile

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "vmap", "custom_function", "checkpoint", "depends",
           "jacrev", "jacfwd", "hessian", "compile", "disable_compile", "enable_compile"]
