import numpy as np

import kiln.core as mx


def test_lazy_chain_and_eval():
    x = mx.array([1.0, 2.0, 3.0])
    y = mx.sin(x) * 2 + 1
    assert y._buf is None
    mx.eval(y)
    np.testing.assert_allclose(np.array(y), np.sin([1.0, 2.0, 3.0]) * 2 + 1, rtol=1e-6)
