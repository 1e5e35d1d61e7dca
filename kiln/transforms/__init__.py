"""Function transformations: grad, vjp, jvp, vmap, custom_function, checkpoint, compile."""
from .custom import checkpoint, custom_function, depends
from .grad import grad, jacrev, value_and_grad, vjp
from .jvp import hessian, jacfwd, jvp
from .vmap import vmap
from .compile import compile, disable_compile, enable_compile

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "vmap", "custom_function", "checkpoint", "depends",
           "jacrev", "jacfwd", "hessian", "compile", "disable_compile", "enable_compile"]
