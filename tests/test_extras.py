import numpy as np
import pytest

import kiln.core as mx
from harness import mlx_core, needs_mlx


@needs_mlx
@pytest.mark.parametrize("name", ["hanning", "hamming", "blackman", "bartlett"])
@pytest.mark.parametrize("m", [0, 1, 2, 7])
def test_windows_match_mlx(name, m):
    got, want = getattr(mx, name)(m), getattr(mlx_core, name)(m)
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-6)


@pytest.mark.parametrize("n,axis", [(1, -1), (2, 1), (1, 0), (0, 0)])
def test_diff_matches_numpy(n, axis):
    x = np.arange(12, dtype=np.float32).reshape(3, 4) ** 2
    np.testing.assert_allclose(np.array(mx.diff(mx.array(x), n=n, axis=axis)), np.diff(x, n=n, axis=axis))
    g = mx.grad(lambda v: mx.sum(mx.diff(v, n=n, axis=axis) ** 2))(mx.array(x))
    assert g.shape == x.shape


def test_device_helpers():
    assert mx.device_count(mx.cpu) == 1
    assert "memory_size" in mx.device_info()
    mx.set_memory_limit(123)
    assert mx.get_memory_limit() == 123
    mx.set_memory_limit(0)
    with mx.StreamContext(mx.cpu):
        assert mx.add(mx.array(1), 1).item() == 2
    s = mx.new_thread_local_stream(mx.cpu)
    assert s.device == mx.cpu
    assert mx.from_dlpack(np.arange(3, dtype=np.int32)).tolist() == [0, 1, 2]
    assert mx.cumulative_sum(mx.array([1, 2, 3])).tolist() == [1, 3, 6]
