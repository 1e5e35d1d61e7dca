"""Training-step cases shared by the MLP and transformer workloads, one helper per framework family.

Every helper builds a fresh model from the same flat parameter dict (``"layers.0.weight": array``),
so the check (loss before and after one optimizer step) and the timing start from the same weights.
The optimizer is Adam, or AdamW when ``wd`` is non-zero, with bias correction everywhere (MLX's
default is off; PyTorch's is on).
"""

from __future__ import annotations

from benchmarks.common import Case

BETAS, EPS = (0.9, 0.999), 1e-8


def lazy(factory):
    """A run function that builds its state on the first (warm-up) call, not when the case is made."""
    made = []

    def run():
        if not made:
            made.append(factory())
        return made[0]()

    return run


def set_params(module, flat: dict) -> None:
    """Assign ``{"layers.0.weight": array}`` into an MLX-style module by attribute path."""
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        obj = module
        for name in parents:
            obj = obj[int(name)] if name.isdigit() else getattr(obj, name)
        setattr(obj, leaf, value)


def _cases(trainer, kw: dict, compiled: bool = True) -> list[Case]:
    variants = ["eager", "compiled"] if compiled else ["eager"]
    return [Case(v, run=lazy(lambda c=(v == "compiled"): trainer(c)[0]),
                 check=lambda c=(v == "compiled"): trainer(c)[1](), **kw) for v in variants]


def mlx_cases(fw, make_model, loss_fn, flat, batch, lr, wd=0.0, **kw) -> list[Case]:
    """Eager and ``mx.compile``d steps with ``nn.value_and_grad`` and an ``optimizers`` class."""
    mx, nn, optim = fw.mx, fw.nn, fw.optim
    batch = [mx.array(b) for b in batch]

    def trainer(compiled: bool):
        model = make_model()
        set_params(model, {k: mx.array(v) for k, v in flat.items()})
        if wd:
            opt = optim.AdamW(learning_rate=lr, betas=list(BETAS), eps=EPS, weight_decay=wd, bias_correction=True)
        else:
            opt = optim.Adam(learning_rate=lr, betas=list(BETAS), eps=EPS, bias_correction=True)
        loss_and_grad = nn.value_and_grad(model, loss_fn)

        def step(*batch):
            loss, grads = loss_and_grad(model, *batch)
            opt.update(model, grads)
            return loss

        if compiled:
            opt.init(model.trainable_parameters())
            state = [model.state, opt.state]
            step = mx.compile(step, inputs=state, outputs=state)

        def run():
            loss = step(*batch)
            mx.eval(loss, model.parameters(), opt.state)
            return loss

        def check():
            before = run()
            return {"loss": mx.stack([before, loss_fn(model, *batch)])}

        return run, check

    return _cases(trainer, kw, compiled=hasattr(mx, "compile"))


def torch_cases(fw, make_model, loss_fn, flat, batch, lr, wd=0.0, **kw) -> list[Case]:
    """Eager and ``torch.compile``d model (forward and backward); the optimizer step stays eager."""
    torch = fw.torch
    batch = [fw.asarray(b) for b in batch]

    def trainer(compiled: bool):
        model = make_model()
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in flat.items()})
        model.to(fw.dev)
        if wd:
            opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=BETAS, eps=EPS, weight_decay=wd)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=lr, betas=BETAS, eps=EPS)
        fwd = torch.compile(model) if compiled else model

        def run():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(fwd, *batch)
            loss.backward()
            opt.step()
            fw.sync()
            return loss.detach()

        def check():
            before = run()
            with torch.no_grad():
                return {"loss": torch.stack([before, loss_fn(fwd, *batch)])}

        return run, check

    return _cases(trainer, kw)


def adam_step(jnp, params, grads, state, lr, wd):
    """One Adam(W) update on dicts of arrays; ``state`` is ``(t, m, v)``."""
    t, m, v = state
    t = t + 1
    m = {k: BETAS[0] * m[k] + (1 - BETAS[0]) * g for k, g in grads.items()}
    v = {k: BETAS[1] * v[k] + (1 - BETAS[1]) * g * g for k, g in grads.items()}
    c1, c2 = 1 - BETAS[0] ** t, 1 - BETAS[1] ** t
    new = {}
    for k, p in params.items():
        if wd:
            p = p * (1 - lr * wd)
        new[k] = p - lr * (m[k] / c1) / (jnp.sqrt(v[k] / c2) + EPS)
    return new, (t, m, v)


def jax_cases(fw, loss_fn, flat, batch, lr, wd=0.0, **kw) -> list[Case]:
    """Eager (op-by-op) and ``jax.jit``-compiled steps; Adam(W) written out (no optax)."""
    jax, jnp = fw.jax, fw.jnp
    batch = [fw.asarray(b) for b in batch]
    value_and_grad = jax.value_and_grad(loss_fn)

    def step(params, state, *batch):
        loss, grads = value_and_grad(params, *batch)
        params, state = adam_step(jnp, params, grads, state, lr, wd)
        return loss, params, state

    def trainer(compiled: bool):
        params = {k: fw.asarray(v) for k, v in flat.items()}
        zeros = {k: jnp.zeros_like(p) for k, p in params.items()}
        carry = [params, (jnp.asarray(0.0, jnp.float32), zeros, zeros)]
        f = jax.jit(step) if compiled else step

        def run():
            loss, params, state = f(*carry, *batch)
            carry[:] = [params, state]
            fw.sync(loss, carry)
            return loss

        def check():
            before = run()
            return {"loss": jnp.stack([before, loss_fn(carry[0], *batch)])}

        return run, check

    return _cases(trainer, kw)
