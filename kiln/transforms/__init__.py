"""Function transformations: grad, vjp, jvp, vmap, custom_function, checkpoint, compile."""
__all__: list = []
