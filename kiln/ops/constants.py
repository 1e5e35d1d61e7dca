"""The constants of the ``mx`` namespace (``mx.pi``, ``mx.inf``, ``mx.newaxis``...)."""
import math

pi = math.pi
e = math.e
euler_gamma = 0.5772156649015329
inf = float("inf")
nan = float("nan")
newaxis = None
