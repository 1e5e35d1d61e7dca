"""``kiln.optimizers``: optimizers and learning-rate schedules (the
``mlx.optimizers`` API), built only on the public ``kiln.core`` API."""
from kiln.optimizers.optimizers import *  # noqa: F401,F403
from kiln.optimizers.schedulers import *  # noqa: F401,F403
