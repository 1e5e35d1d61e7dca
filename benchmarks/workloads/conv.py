"""A ResNet-style 3x3 convolution (stride 1, padding 1): forward, and forward + backward.

Data are NHWC with OHWI weights (MLX's layout); PyTorch gets NCHW/OIHW copies made before timing,
and its results are transposed back for the check.
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import Case

SIZES = {
    "full": {"batch": 32, "hw": 32, "c_in": 64, "c_out": 64, "repeats": 10},
    "quick": {"batch": 2, "hw": 8, "c_in": 8, "c_out": 8, "repeats": 3},
}
RTOL = 1e-4


def make_data(params: dict, rng: np.random.Generator) -> dict:
    b, hw, ci, co = params["batch"], params["hw"], params["c_in"], params["c_out"]
    return {
        "x": rng.standard_normal((b, hw, hw, ci)).astype(np.float32),
        "w": (rng.standard_normal((co, 3, 3, ci)) / np.sqrt(9 * ci)).astype(np.float32),
        "g": rng.standard_normal((b, hw, hw, co)).astype(np.float32),  # the cotangent of the output
    }


def _cases(fw, params, forward, backward, layout=lambda r: r) -> list[Case]:
    b, hw, ci, co = params["batch"], params["hw"], params["c_in"], params["c_out"]
    gflop = 2 * b * hw * hw * ci * co * 9 / 1e9
    return [
        Case("forward", run=lambda: fw.sync(forward()), check=lambda: {"y": layout(forward())},
             rate=(gflop, "GFLOP/s")),
        Case("forward+backward", run=lambda: fw.sync(backward()),
             check=lambda: dict(zip(("dx", "dw"), map(layout, backward()))), rate=(3 * gflop, "GFLOP/s")),
    ]


def build_mlx(fw, data, params):
    mx = fw.mx
    x, w, g = (mx.array(data[k]) for k in "xwg")
    grad = mx.grad(lambda x, w: (mx.conv2d(x, w, padding=1) * g).sum(), argnums=(0, 1))
    return _cases(fw, params, lambda: mx.conv2d(x, w, padding=1), lambda: grad(x, w))


def build_jax(fw, data, params):
    jax = fw.jax
    x, w, g = (fw.asarray(data[k]) for k in "xwg")

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "OHWI", "NHWC"))

    forward = jax.jit(conv)
    grad = jax.jit(jax.grad(lambda x, w: (conv(x, w) * g).sum(), argnums=(0, 1)))
    return _cases(fw, params, lambda: forward(x, w), lambda: grad(x, w))


def build_torch(fw, data, params):
    torch = fw.torch
    x = fw.asarray(data["x"].transpose(0, 3, 1, 2)).requires_grad_()
    w = fw.asarray(data["w"].transpose(0, 3, 1, 2)).requires_grad_()
    g = fw.asarray(data["g"].transpose(0, 3, 1, 2))

    def forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(x, w, padding=1)

    def backward():
        x.grad = w.grad = None
        torch.nn.functional.conv2d(x, w, padding=1).backward(g)
        return x.grad, w.grad

    return _cases(fw, params, forward, backward, layout=lambda r: r.detach().permute(0, 2, 3, 1))


def build_numpy(fw, data, params):
    """The convolution as nine shifted matrix products, and their transposes for the backward pass."""
    x, w, g = data["x"], data["w"], data["g"]
    hw = x.shape[1]
    shifts = [(i, j) for i in range(3) for j in range(3)]

    def forward():
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return sum(xp[:, i:i + hw, j:j + hw, :] @ w[:, i, j, :].T for i, j in shifts)

    def backward():
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        dxp = np.zeros_like(xp)
        dw = np.empty_like(w)
        g2 = g.reshape(-1, g.shape[-1])
        for i, j in shifts:
            dw[:, i, j, :] = g2.T @ xp[:, i:i + hw, j:j + hw, :].reshape(-1, x.shape[-1])
            dxp[:, i:i + hw, j:j + hw, :] += g @ w[:, i, j, :]
        return dxp[:, 1:-1, 1:-1, :], dw

    return _cases(fw, params, forward, backward)
