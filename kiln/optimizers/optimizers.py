"""Optimizers (the ``mlx.optimizers`` API).

An optimizer keeps a state tree shaped like the parameters (plus ``step``
and the hyper-parameters, which may be schedules) and implements only
``init_single`` / ``apply_single`` for one parameter; the tree walks are
shared.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple, Union

import kiln.core as mx
from kiln.utils import tree_flatten, tree_map, tree_merge, tree_reduce, tree_unflatten

__all__ = [
    "Optimizer", "SGD", "RMSprop", "Adagrad", "AdaDelta", "Adam", "AdamW", "Adamax", "Lion",
    "Adafactor", "Muon", "MultiOptimizer", "clip_grad_norm",
]

Rate = Union[float, Callable]


class Optimizer:
    """Base class: subclasses define ``init_single(parameter, state)`` and
    ``apply_single(gradient, parameter, state) -> new_parameter``."""

    def __init__(self, schedulers=None):
        self._initialized = False
        self._state = {"step": mx.array(0, mx.uint64)}
        self._schedulers = {k: v for k, v in (schedulers or {}).items()}

    def update(self, model, gradients):
        """Apply ``gradients`` to ``model``'s parameters in place.

        Args:
            model: an ``nn.Module``.
            gradients: a tree like ``model.trainable_parameters()``.
        """
        model.update(self.apply_gradients(gradients, model))

    def init(self, parameters: dict):
        """Create the state of every parameter (kept where it exists).

        Args:
            parameters: a tree of arrays.
        """

        def fill(params, state):
            if isinstance(params, (list, tuple)):
                state = list(state)
                for i in range(len(state)):
                    state[i] = fill(params[i], state[i])
                state.extend(tree_map(lambda _: {}, list(params[len(state):])))
                return type(params)(state)
            if isinstance(params, dict):
                for k, v in params.items():
                    state[k] = fill(v, state[k]) if k in state else tree_map(lambda _: {}, v)
                return state
            return state

        fill(parameters, self._state)
        tree_map(lambda p, s: s or self.init_single(p, s), parameters, self._state)
        self._initialized = True

    def init_single(self, parameter, state: dict):
        """Create the state of one parameter (in ``state``)."""
        raise NotImplementedError()

    def apply_gradients(self, gradients: dict, parameters: dict):
        """Return the updated parameters (does not modify a model).

        Args:
            gradients: a tree of gradients.
            parameters: a tree with at least the structure of ``gradients``.

        Returns:
            The new parameters, shaped like ``gradients``.
        """
        if not self._initialized:
            self.init(gradients)
        for name, schedule in self._schedulers.items():
            self.state[name] = schedule(self.step)
        self.state["step"] = self.step + 1
        self._per_step = {}
        self.prepare_step()
        return tree_map(self.apply_single, gradients, parameters, self.state)

    def prepare_step(self):
        """Compute this step's scalars once, before any parameter is updated.

        Subclasses store them with ``self._scalar(name, value)``; ``apply_single`` reads them
        with ``self._scalar(name, dtype=...)`` (cast once per dtype, not once per parameter).
        """

    def _scalar(self, name, value=None, dtype=None):
        cache = self.__dict__.setdefault("_per_step", {})
        if value is not None:
            cache[name] = value
            return value
        if dtype is None:
            return cache[name]
        key = (name, dtype)
        got = cache.get(key)
        if got is None:
            got = cache[key] = cache[name].astype(dtype)
        return got

    def apply_single(self, gradient, parameter, state):
        """Return the updated ``parameter`` (and update ``state``)."""
        raise NotImplementedError()

    @property
    def state(self):
        """The optimizer state (saveable with ``tree_flatten``)."""
        return self._state

    @state.setter
    def state(self, state: dict):
        self._initialized = False
        self._state = state

    @property
    def step(self):
        """The number of updates done so far (an array)."""
        return self.state["step"]

    @property
    def learning_rate(self):
        """The current learning rate (an array)."""
        return self.state["learning_rate"]

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.state["learning_rate"] = mx.array(learning_rate)

    def _maybe_schedule(self, name: str, param: Rate):
        """Store hyper-parameter ``name``; a callable is a schedule of the step."""
        if isinstance(param, Callable):
            self._schedulers[name] = param
            value = param(self.step)
        else:
            value = mx.array(param)
        self.state[name] = value


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening,
    Nesterov momentum and weight decay.

    Args:
        learning_rate: the rate or a schedule.
        momentum: momentum strength.
        weight_decay: L2 penalty added to the gradient.
        dampening: dampening of the momentum.
        nesterov: Nesterov momentum (needs momentum and no dampening).
    """

    def __init__(self, learning_rate: Rate, momentum: float = 0.0, weight_decay: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening.")
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.dampening = dampening
        self.nesterov = nesterov

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        if self.weight_decay != 0:
            gradient = gradient + self.weight_decay * parameter
        if self.momentum <= 0:
            return parameter - lr * gradient
        v = self.momentum * state.get("v")
        v = v + ((1 - self.dampening) * gradient if self.dampening > 0 else gradient)
        state["v"] = v
        update = gradient + self.momentum * v if self.nesterov else v
        return parameter - lr * update


class RMSprop(Optimizer):
    """RMSprop: divide by a running root mean square of the gradients.

    Args:
        learning_rate: the rate or a schedule.
        alpha: smoothing constant.
        eps: added to the denominator.
    """

    def __init__(self, learning_rate: Rate, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.alpha = alpha
        self.eps = eps
        if alpha < 0.0:
            raise ValueError(f"RMSprop alpha should be >=0, {alpha} was provided instead")
        if not eps > 0.0:
            raise ValueError(f"RMSprop epsilon should be >0, {eps} was provided instead")

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        v = self.alpha * state["v"] + (1 - self.alpha) * mx.square(gradient)
        state["v"] = v
        return parameter - lr * gradient / (mx.sqrt(v) + self.eps)


class Adagrad(Optimizer):
    """Adagrad: divide by the root of the summed squared gradients.

    Args:
        learning_rate: the rate or a schedule.
        eps: added to the denominator.
    """

    def __init__(self, learning_rate: Rate, eps: float = 1e-8):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.eps = eps
        if not eps > 0.0:
            raise ValueError(f"Adagrad epsilon should be >0, {eps} was provided instead")

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        v = state["v"] + mx.square(gradient)
        state["v"] = v
        return parameter - lr * gradient / (mx.sqrt(v) + self.eps)


class AdaDelta(Optimizer):
    """AdaDelta: steps scaled by running RMS of past updates over running RMS
    of gradients.

    Args:
        learning_rate: the rate or a schedule.
        rho: smoothing constant.
        eps: added inside the square roots.
    """

    def __init__(self, learning_rate: Rate, rho: float = 0.9, eps: float = 1e-6):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.rho = rho
        self.eps = eps
        if rho < 0.0:
            raise ValueError(f"AdaDelta rho should be >=0, {rho} was provided instead")
        if not eps > 0.0:
            raise ValueError(f"AdaDelta epsilon should be >0, {eps} was provided instead")

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)
        state["u"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        rho, eps = self.rho, self.eps
        v = rho * state["v"] + (1 - rho) * mx.square(gradient)
        d = mx.sqrt(state["u"] + eps) / mx.sqrt(v + eps) * gradient
        state["u"] = rho * state["u"] + (1 - rho) * mx.square(d)
        state["v"] = v
        return parameter - lr * d


class Adam(Optimizer):
    """Adam: first and second moment estimates.

    Args:
        learning_rate: the rate or a schedule.
        betas: decay rates of the two moments.
        eps: added to the denominator.
        bias_correction: correct the moments' initial bias.
    """

    def __init__(self, learning_rate: Rate, betas: List[float] = [0.9, 0.999], eps: float = 1e-8,
                 bias_correction: bool = False):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.betas = betas
        self.eps = eps
        self.bias_correction = bias_correction

    def init_single(self, parameter, state):
        state["m"] = mx.zeros_like(parameter)
        state["v"] = mx.zeros_like(parameter)

    def prepare_step(self):
        # p - c1 m / (sqrt(v) c2 + eps) == p - (c1 / c2) m / (sqrt(v) + eps / c2): the
        # bias corrections fold into two scalars per step, one pass fewer per parameter.
        lr = self.learning_rate
        if self.bias_correction:
            b1, b2 = self.betas
            step = self.step.astype(mx.float32)
            c2 = mx.rsqrt(1 - b2**step)
            self._scalar("rate", (lr / (1 - b1**step)) / c2)
            self._scalar("eps", self.eps / c2)
        else:
            self._scalar("rate", lr)
            self._scalar("eps", mx.array(self.eps, mx.float32))

    def apply_single(self, gradient, parameter, state):
        b1, b2 = self.betas
        dt = gradient.dtype
        m = b1 * state["m"] + (1 - b1) * gradient
        v = b2 * state["v"] + (1 - b2) * mx.square(gradient)
        # Rebind the state first: the old moments are then held by nothing but the new
        # nodes, so evaluation may write the new moments into their buffers.
        state["m"], state["v"] = m, v
        rate, eps = self._scalar("rate", dtype=dt), self._scalar("eps", dtype=dt)
        return parameter - rate * m / (mx.sqrt(v) + eps)


class AdamW(Adam):
    """Adam with decoupled weight decay ``p <- p * (1 - lr * weight_decay)``.

    Args:
        learning_rate: the rate or a schedule.
        betas: decay rates of the two moments.
        eps: added to the denominator.
        weight_decay: decoupled weight decay.
        bias_correction: correct the moments' initial bias.
    """

    def __init__(self, learning_rate: Rate, betas: List[float] = [0.9, 0.999], eps: float = 1e-8,
                 weight_decay: float = 0.01, bias_correction: bool = False):
        super().__init__(learning_rate=learning_rate, betas=betas, eps=eps,
                         bias_correction=bias_correction)
        self.weight_decay = weight_decay

    def prepare_step(self):
        super().prepare_step()
        self._scalar("decay", 1 - self.learning_rate * self.weight_decay)

    def apply_single(self, gradient, parameter, state):
        return super().apply_single(gradient, parameter * self._scalar("decay", dtype=gradient.dtype), state)


class Adamax(Adam):
    """Adamax: Adam with an infinity-norm second moment.

    Args:
        learning_rate: the rate or a schedule.
        betas: decay rates.
        eps: added to the denominator.
    """

    def __init__(self, learning_rate: Rate, betas: List[float] = [0.9, 0.999], eps: float = 1e-8):
        super().__init__(learning_rate, betas, eps)
        if not 0.0 <= eps:
            raise ValueError(f"Epsilon value should be >=0, {self.eps} was provided instead")

    def init_single(self, parameter, state):
        state["m"] = mx.zeros_like(parameter)
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        b1, b2 = self.betas
        m = b1 * state["m"] + (1 - b1) * gradient
        v = mx.maximum(b2 * state["v"], mx.abs(gradient))
        state["m"], state["v"] = m, v
        return parameter - lr * m / (v + self.eps)


class Lion(Optimizer):
    """Lion: the sign of an interpolation of momentum and gradient.

    Args:
        learning_rate: the rate or a schedule.
        betas: interpolation and momentum rates.
        weight_decay: decoupled weight decay.
    """

    def __init__(self, learning_rate: Rate, betas: List[float] = [0.9, 0.99], weight_decay: float = 0.0):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.betas = betas
        self.weight_decay = weight_decay

    def init_single(self, parameter, state):
        state["m"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        b1, b2 = self.betas
        m = state["m"]
        c = b1 * m + (1 - b1) * gradient
        state["m"] = b2 * m + (1 - b2) * gradient
        if self.weight_decay > 0:
            parameter = (1 - lr * self.weight_decay) * parameter
        return parameter - lr * mx.sign(c)


class Adafactor(Optimizer):
    """Adafactor: factored second moments (row and column averages for
    matrices), relative step sizes and update clipping.

    Args:
        learning_rate: the rate or a schedule (``None`` with
            ``relative_step``).
        eps: regulariser of the squared gradient and floor of the
            parameter scale.
        clip_threshold: clip the update's RMS to this.
        decay_rate: exponent of the second-moment decay schedule.
        beta_1: first-moment rate (``None``: no first moment).
        weight_decay: weight decay.
        scale_parameter: scale the step by the parameter RMS.
        relative_step: use the ``1/sqrt(step)`` relative step.
        warmup_init: warm up the relative step.
    """

    def __init__(self, learning_rate: Optional[Rate] = None, eps: Tuple[float, float] = (1e-30, 1e-3),
                 clip_threshold: float = 1.0, decay_rate: float = -0.8, beta_1: Optional[float] = None,
                 weight_decay: float = 0.0, scale_parameter: bool = True, relative_step: bool = True,
                 warmup_init: bool = False):
        super().__init__()
        if learning_rate is not None:
            self._maybe_schedule("learning_rate", learning_rate)
        self.eps = eps
        self.clip_threshold = clip_threshold
        self.decay_rate = decay_rate
        self.beta_1 = beta_1
        self.weight_decay = weight_decay
        self.scale_parameter = scale_parameter
        self.relative_step = relative_step
        self.warmup_init = warmup_init

    def init_single(self, parameter, state):
        if parameter.ndim >= 2:
            shape = parameter.shape
            dtype = parameter.dtype
            state["exp_avg_sq_row"] = mx.zeros(shape[:-1], dtype=dtype)
            state["exp_avg_sq_col"] = mx.zeros(shape[:-2] + shape[-1:], dtype=dtype)
        else:
            state["exp_avg_sq"] = mx.zeros_like(parameter)
        if self.beta_1 is not None:
            state["exp_avg"] = mx.zeros_like(parameter)

    @staticmethod
    def _rms(x):
        return mx.sqrt(mx.mean(mx.square(x)))

    def _step_size(self, step, parameter_rms):
        if self.relative_step:
            floor = 1e-6 * step if self.warmup_init else 1e-2
            rel = mx.minimum(floor, mx.rsqrt(step))
        else:
            rel = self.learning_rate
        scale = mx.maximum(self.eps[1], parameter_rms) if self.scale_parameter else 1.0
        return scale * rel

    def apply_single(self, gradient, parameter, state):
        step = self.step.astype(mx.float32)
        factored = gradient.ndim >= 2
        lr = self._step_size(step, self._rms(parameter)).astype(gradient.dtype)
        beta_2 = (1.0 - step**self.decay_rate).astype(gradient.dtype)
        update = mx.square(gradient) + self.eps[0]
        if factored:
            row = beta_2 * state["exp_avg_sq_row"] + (1 - beta_2) * mx.mean(update, axis=-1)
            col = beta_2 * state["exp_avg_sq_col"] + (1 - beta_2) * mx.mean(update, axis=-2)
            state["exp_avg_sq_row"], state["exp_avg_sq_col"] = row, col
            # Rank-1 reconstruction of the second moment from its row/col means.
            r = mx.rsqrt(row / mx.mean(row, axis=-1, keepdims=True))
            c = mx.rsqrt(col)
            update = mx.expand_dims(r, -1) * mx.expand_dims(c, -2) * gradient
        else:
            v = beta_2 * state["exp_avg_sq"] + (1 - beta_2) * update
            state["exp_avg_sq"] = v
            update = mx.rsqrt(v) * gradient
        update = update / mx.maximum(1.0, self._rms(update) / self.clip_threshold)
        update = lr * update
        if self.beta_1 is not None:
            avg = self.beta_1 * state["exp_avg"] + (1 - self.beta_1) * update
            state["exp_avg"] = avg
            update = avg
        if self.weight_decay != 0:
            parameter = parameter + parameter * (-self.weight_decay * lr)
        return parameter - update


class Muon(Optimizer):
    """Muon: momentum whose update matrix is orthogonalised by a quintic
    Newton-Schulz iteration (for 2-D and higher parameters; lower-dimensional
    ones get plain momentum SGD).

    Args:
        learning_rate: the rate or a schedule.
        momentum: momentum strength.
        weight_decay: L2 penalty added to the gradient.
        nesterov: Nesterov momentum.
        ns_steps: Newton-Schulz iterations.
    """

    def __init__(self, learning_rate: Rate, momentum: float = 0.95, weight_decay: float = 0.01,
                 nesterov: bool = True, ns_steps: int = 5):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.ns_steps = ns_steps

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)

    def _orthogonalize(self, x):
        a, b, c = 3.4445, -4.7750, 2.0315
        transpose = x.shape[-2] > x.shape[-1]
        if transpose:
            x = x.swapaxes(-1, -2)
        x = x / (mx.sqrt(mx.sum(mx.square(x), axis=(-2, -1), keepdims=True)) + 1e-7)
        for _ in range(self.ns_steps):
            A = x @ x.swapaxes(-1, -2)
            B = b * A + c * (A @ A)
            x = a * x + B @ x
        return x.swapaxes(-1, -2) if transpose else x

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        if self.weight_decay != 0:
            # An L2 term in the gradient (before the momentum), as MLX does.
            gradient = gradient + self.weight_decay * parameter
        v = self.momentum * state["v"] + (1 - self.momentum) * gradient
        state["v"] = v
        update = gradient * (1 - self.momentum) + v * self.momentum if self.nesterov else v
        if update.ndim >= 2:
            shape = update.shape
            if update.ndim > 2:
                update = update.reshape(shape[0], -1)
            update = self._orthogonalize(update)
            scale = max(1.0, update.shape[-2] / update.shape[-1]) ** 0.5
            update = (update * scale).reshape(shape)
        return parameter - lr * update


class MultiOptimizer(Optimizer):
    """Use different optimizers for different parameters.

    Parameter ``path, gradient`` goes to the first optimizer whose filter
    ``filters[i](path, gradient)`` is true, or to the last optimizer.

    Args:
        optimizers: the optimizers.
        filters: ``len(optimizers) - 1`` predicates.
    """

    def __init__(self, optimizers, filters: list = []):
        super().__init__()
        self._state = {}
        if len(filters) != len(optimizers) - 1:
            raise ValueError(
                f"Given {len(filters)} filters but {len(optimizers) - 1} needed."
            )
        self.optimizers = optimizers
        self.filters = filters + [lambda *args, **kwargs: True]

    def _split(self, gradients):
        parts = [[] for _ in self.optimizers]
        for path, g in tree_flatten(gradients):
            for i, fn in enumerate(self.filters):
                if fn(path, g):
                    parts[i].append((path, g))
                    break
        return [tree_unflatten(p) for p in parts]

    def init(self, parameters: dict):
        for opt, params in zip(self.optimizers, self._split(parameters)):
            opt.init(params)

    def apply_gradients(self, gradients: dict, parameters: dict):
        out = {}
        for opt, grads in zip(self.optimizers, self._split(gradients)):
            out = tree_merge(out, opt.apply_gradients(grads, parameters))
        return out

    @property
    def state(self):
        return {"states": [o.state for o in self.optimizers]}

    @state.setter
    def state(self, state: dict):
        if "states" not in state or len(state["states"]) != len(self.optimizers):
            raise ValueError("Invalid state provided")
        for opt, s in zip(self.optimizers, state["states"]):
            opt.state = s

    @property
    def learning_rate(self):
        return self.optimizers[0].learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        for opt in self.optimizers:
            opt.learning_rate = learning_rate


def clip_grad_norm(grads, max_norm: float):
    """Scale ``grads`` so their global L2 norm is at most ``max_norm``.

    Args:
        grads: a tree of gradients.
        max_norm: the largest allowed norm.

    Returns:
        ``(clipped_grads, total_norm)``.
    """
    if not max_norm >= 0:
        raise ValueError(f"max_norm should be >=0, {max_norm} was provided instead")
    norm_sq = tree_reduce(lambda acc, g: acc + mx.sum(mx.square(g)), grads, 0.0)
    total = mx.sqrt(norm_sq)
    factor = mx.minimum(max_norm / (total + 1e-6), 1.0)
    return tree_map(lambda g: g * factor, grads), total
