"""nn.Module attributes that hold plain Python values (lists/tuples of ints, strings, None,
nested lists mixing modules and values) round-trip through parameters(), trainable_parameters(),
update(), update_modules(), nn.value_and_grad and compile as in MLX.

The expected outcomes come from the real MLX where it is importable; the round-trip checks
(a tree from the module's own methods is always accepted and changes nothing) run without it.
"""
from __future__ import annotations

import numpy as np
import pytest

import kiln.core as mx
import kiln.nn as nn
from kiln.utils import tree_flatten

try:
    import mlx.core as mlx
    import mlx.nn as mlx_nn
    from mlx.utils import tree_flatten as mlx_tree_flatten
except ImportError:
    mlx = None

needs_mlx = pytest.mark.skipif(mlx is None, reason="real MLX not importable")


def _model_class(m, nnm):
    class VAE(nnm.Module):
        def __init__(self):
            super().__init__()
            self.input_shape = [1, 2, 3]
            self.label = "vae"
            self.pair = (4, 5)
            self.nothing = None
            self.mixed = [nnm.Linear(2, 2), 0, None, "s", [nnm.Linear(2, 3), 7]]
            self.table = {"a": nnm.Linear(2, 2), "b": 0, "c": "x", "e": [1, 2]}
            self.lin = nnm.Linear(2, 2)

        def __call__(self, x):
            return (self.lin(x).sum() + self.mixed[0](x).sum() + self.mixed[4][0](x).sum()
                    + self.table["a"](x).sum())

    return VAE


def _plain(model):
    return (model.input_shape, model.label, model.pair, model.nothing, model.mixed[1:4],
            model.mixed[4][1], {k: model.table[k] for k in "bce"})


def test_trees_from_the_module_round_trip():
    model = _model_class(mx, nn)()
    before = _plain(model)
    keys = [k for k, _ in tree_flatten(model.parameters())]
    assert keys == ["mixed.0.weight", "mixed.0.bias", "mixed.4.0.weight", "mixed.4.0.bias",
                    "table.a.weight", "table.a.bias", "lin.weight", "lin.bias"]
    assert [k for k, _ in tree_flatten(model.trainable_parameters())] == keys
    model.update(model.parameters())
    model.update(model.trainable_parameters())
    model.update_modules(model.children())
    model.update_modules(model.leaf_modules())
    assert _plain(model) == before
    assert isinstance(model.pair, tuple)


def test_value_and_grad_and_compile_over_plain_values():
    model = _model_class(mx, nn)()
    x = mx.ones((2,))
    loss, grads = nn.value_and_grad(model, lambda x: model(x))(x)
    assert [k for k, _ in tree_flatten(grads)] == [k for k, _ in tree_flatten(model.parameters())]
    np.testing.assert_allclose(loss.item(), model(x).item(), rtol=1e-6)
    np.testing.assert_allclose(mx.compile(lambda x: model(x))(x).item(), model(x).item(), rtol=1e-6)
    # an optimizer-style step: update with the gradient tree
    model.update(grads)
    assert model.input_shape == [1, 2, 3]


# (what, method, tree): updates whose outcome (accepted or the error's text) must match MLX
UPDATES = [
    ("list_value_with_int", "update", lambda m, nnm: {"input_shape": [5]}),
    ("list_value_with_str", "update", lambda m, nnm: {"input_shape": "x"}),
    ("tuple_with_empty", "update", lambda m, nnm: {"pair": [{}]}),
    ("none_attribute", "update", lambda m, nnm: {"nothing": {}}),
    ("str_attribute", "update", lambda m, nnm: {"label": 3}),
    ("weight_with_int", "update", lambda m, nnm: {"lin": {"weight": 3}}),
    ("weight_other_shape", "update", lambda m, nnm: {"lin": {"weight": m.zeros((3, 3))}}),
    ("mixed_with_int", "update", lambda m, nnm: {"mixed": [{}, 5]}),
    ("modules_list_value_int", "update_modules", lambda m, nnm: {"input_shape": [5]}),
    ("modules_list_value_empty", "update_modules", lambda m, nnm: {"input_shape": [{}]}),
    ("modules_value_slot_with_module", "update_modules",
     lambda m, nnm: {"mixed": [{}, nnm.Linear(1, 1)]}),
    ("modules_dict_value_with_module", "update_modules",
     lambda m, nnm: {"table": {"b": nnm.Linear(1, 1)}}),
    ("modules_none_with_module", "update_modules", lambda m, nnm: {"nothing": nnm.Linear(1, 1)}),
    ("modules_module_with_int", "update_modules", lambda m, nnm: {"lin": 3}),
    ("modules_module_with_empty", "update_modules", lambda m, nnm: {"lin": {}}),
    ("modules_tuple_with_module", "update_modules", lambda m, nnm: {"pair": nnm.Linear(1, 1)}),
    ("modules_replace", "update_modules", lambda m, nnm: {"mixed": [nnm.Linear(2, 4)]}),
    ("modules_too_long", "update_modules", lambda m, nnm: {"mixed": [{}] * 6}),
]


def _outcome(m, nnm, method, make):
    model = _model_class(m, nnm)()
    try:
        getattr(model, method)(make(m, nnm))
    except ValueError as e:
        return f"ValueError: {e}"
    return ("ok", _plain(model), model.mixed[0].weight.shape, model.lin.weight.shape)


@pytest.mark.parametrize("what,method,make", UPDATES, ids=[u[0] for u in UPDATES])
def test_update_outcomes_without_mlx(what, method, make):
    got = _outcome(mx, nn, method, make)
    if what in ("tuple_with_empty", "modules_list_value_empty", "modules_module_with_empty"):
        assert got[0] == "ok"
    elif what == "modules_replace":
        assert got[0] == "ok" and got[2] == (4, 2)
    elif what == "weight_other_shape":
        assert got[0] == "ok" and got[3] == (3, 3)
    else:
        assert got.startswith("ValueError")


@needs_mlx
@pytest.mark.parametrize("what,method,make", UPDATES, ids=[u[0] for u in UPDATES])
def test_update_outcomes_match_mlx(what, method, make):
    assert _outcome(mx, nn, method, make) == _outcome(mlx, mlx_nn, method, make)


@needs_mlx
def test_parameter_trees_match_mlx():
    ours = _model_class(mx, nn)()
    ref = _model_class(mlx, mlx_nn)()

    def shape_tree(t):
        if isinstance(t, dict):
            return {k: shape_tree(v) for k, v in t.items()}
        if isinstance(t, list):
            return [shape_tree(v) for v in t]
        return tuple(t.shape)

    assert shape_tree(ours.parameters()) == shape_tree(ref.parameters())
    assert shape_tree(ours.trainable_parameters()) == shape_tree(ref.trainable_parameters())
    assert ([k for k, _ in tree_flatten(ours.leaf_modules(), is_leaf=lambda x: isinstance(x, nn.Module))]
            == [k for k, _ in mlx_tree_flatten(ref.leaf_modules(),
                                               is_leaf=lambda x: isinstance(x, mlx_nn.Module))])
