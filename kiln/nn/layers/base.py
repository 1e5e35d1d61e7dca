"""``Module``: the base of every layer, a dict of parameters and child modules.

A module stores its arrays and sub-modules as dict entries (so the module
*is* its parameter tree) and everything else as ordinary attributes.
Parameters whose name starts with ``_`` are not parameters (buffers such as
a causal mask or RoPE frequencies live there).
"""
from __future__ import annotations

import textwrap
from typing import Any, Callable, List, Optional, Tuple, Union

import kiln.core as mx
from kiln.utils import tree_flatten, tree_unflatten

__all__ = ["Module"]


def _is_array(x) -> bool:
    return isinstance(x, mx.array)


class Module(dict):
    """Base class of all layers and models.

    Arrays and modules (and lists/dicts of them) assigned as attributes are
    stored in the dict itself and make up the module's parameter tree.
    """

    __call__: Callable

    def __init__(self):
        self._no_grad = set()
        self._training = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Report top-level calls to mx.checkpoint(fun, interval=k) while one records (a no-op otherwise).
        if "__call__" in cls.__dict__:
            cls.__call__ = mx._checkpoint_module_call(cls.__dict__["__call__"])

    # -- attribute access ---------------------------------------------------
    @property
    def training(self) -> bool:
        """Whether the module is in training mode."""
        return self._training

    @property
    def state(self) -> "Module":
        """The module's whole state: the module dict itself (parameters,
        buffers and children)."""
        return self

    def __getattr__(self, key: str):
        # Only called when normal attribute lookup fails.
        if key in self:
            return self[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def __setattr__(self, key: str, val: Any):
        if isinstance(val, (mx.array, dict, list, tuple)):
            if key in self.__dict__:
                del self.__dict__[key]
            self[key] = val
        else:
            if key in self:
                del self[key]
            super().__setattr__(key, val)

    def __delattr__(self, key: str):
        if key in self:
            del self[key]
        else:
            super().__delattr__(key)

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = tree_flatten(self.children(), is_leaf=lambda x: isinstance(x, Module))
        value = f"{type(self).__name__}({self._extra_repr()}"
        for k, v in children:
            value += "\n" + textwrap.indent(f"({k}): {v!r}", "  ")
        if children:
            value += "\n"
        return value + ")"

    # -- filters ------------------------------------------------------------
    @staticmethod
    def is_module(value) -> bool:
        """Whether ``value`` is a Module."""
        return isinstance(value, Module)

    @staticmethod
    def valid_child_filter(module, key, value) -> bool:
        """Filter keeping containers that may hold child modules."""
        return isinstance(value, (dict, list))

    @staticmethod
    def valid_parameter_filter(module, key, value) -> bool:
        """Filter keeping arrays and containers whose key is public."""
        return isinstance(value, (dict, list, mx.array)) and not key.startswith("_")

    @staticmethod
    def trainable_parameter_filter(module, key, value) -> bool:
        """Like ``valid_parameter_filter`` but skipping frozen keys."""
        return Module.valid_parameter_filter(module, key, value) and key not in module._no_grad

    def filter_and_map(
        self,
        filter_fn: Callable[["Module", str, Any], bool],
        map_fn: Optional[Callable] = None,
        is_leaf_fn: Optional[Callable[["Module", str, Any], bool]] = None,
    ) -> dict:
        """Walk the module tree keeping entries that pass ``filter_fn``.

        Args:
            filter_fn: ``filter_fn(module, key, value)`` decides what to keep.
            map_fn: applied to each kept leaf (identity by default).
            is_leaf_fn: ``is_leaf_fn(module, key, value)`` marks leaves
                (default: anything that is not a module, dict or list).

        Returns:
            A tree (dicts and lists) of the mapped leaves.
        """
        map_fn = map_fn or (lambda x: x)
        is_leaf_fn = is_leaf_fn or (
            lambda m, k, v: not isinstance(v, (Module, dict, list))
        )
        return {
            k: _unwrap(self, k, v, filter_fn, map_fn, is_leaf_fn)
            for k, v in self.items()
            if filter_fn(self, k, v)
        }

    # -- trees of parameters and modules ------------------------------------
    def parameters(self) -> dict:
        """All parameters (arrays) as a tree of dicts and lists."""
        return self.filter_and_map(self.valid_parameter_filter, is_leaf_fn=lambda m, k, v: _is_array(v))

    def trainable_parameters(self) -> dict:
        """The parameters that are not frozen."""
        return self.filter_and_map(
            self.trainable_parameter_filter, is_leaf_fn=lambda m, k, v: _is_array(v)
        )

    def children(self) -> dict:
        """The direct child modules, as a tree."""
        return self.filter_and_map(
            self.valid_child_filter, is_leaf_fn=lambda m, k, v: isinstance(v, Module)
        )

    def leaf_modules(self) -> dict:
        """The modules without children, as a tree."""
        def is_leaf(m, k, v):
            return isinstance(v, Module) and len(tree_flatten(v.children())) == 0

        return self.filter_and_map(self.valid_child_filter, is_leaf_fn=is_leaf)

    def named_modules(self) -> List[Tuple[str, "Module"]]:
        """All modules with their dotted names, this module first (named
        ``""``), then a depth-first walk of its children."""
        stack = [("", self)]
        out = []
        while stack:
            prefix, module = stack.pop()
            out.append((prefix, module))
            for k, child in tree_flatten(module.children(), is_leaf=self.is_module):
                stack.append((f"{prefix}.{k}" if prefix else k, child))
        return out

    def modules(self) -> List["Module"]:
        """All modules, in the order of :meth:`named_modules`."""
        return [m for _, m in self.named_modules()]

    # -- updates --------------------------------------------------------------
    def update(self, parameters: dict, strict: bool = True) -> "Module":
        """Replace parameters with those in the tree ``parameters``.

        Args:
            parameters: a (possibly partial) tree like ``self.parameters()``.
            strict: raise if ``parameters`` names something the module lacks
                or holds a value of the wrong kind.

        Returns:
            The module, updated in place.
        """
        _update_tree(self, parameters, strict, leaf_type=mx.array, kind="parameter")
        return self

    def update_modules(self, modules: dict, strict: bool = True) -> "Module":
        """Replace child modules with those in the tree ``modules``.

        Args:
            modules: a (possibly partial) tree like ``self.children()``.
            strict: raise on names or values that do not fit.

        Returns:
            The module, updated in place.
        """
        _update_tree(self, modules, strict, leaf_type=Module, kind="module")
        return self

    def apply(self, map_fn: Callable, filter_fn: Optional[Callable] = None) -> "Module":
        """Map the parameters through ``map_fn`` (e.g. a dtype cast).

        Args:
            map_fn: function of an array.
            filter_fn: which parameters to map (default: all valid ones).

        Returns:
            The module, updated in place.
        """
        filter_fn = filter_fn or Module.valid_parameter_filter
        self.update(self.filter_and_map(filter_fn, map_fn, is_leaf_fn=lambda m, k, v: _is_array(v)))
        return self

    def apply_to_modules(self, apply_fn: Callable[[str, "Module"], Any]) -> "Module":
        """Call ``apply_fn(name, module)`` on every module, this one included."""
        for name, module in self.named_modules():
            apply_fn(name, module)
        return self

    # -- freezing -------------------------------------------------------------
    def _set_no_grad(self, freeze: bool, recurse: bool, keys, strict: bool) -> "Module":
        def apply(module):
            names = keys
            if names is None:
                # Frozen names are dotted paths below this module (``d.a``),
                # the keys the trainable filter sees inside dicts and lists.
                local = module.filter_and_map(
                    lambda m, k, v: not isinstance(v, Module) and m.valid_parameter_filter(m, k, v)
                )
                names = [k for k, _ in tree_flatten(local)]
            elif isinstance(names, str):
                names = [names]
            if strict and not recurse:
                for k in names:
                    if k not in module:
                        raise KeyError(f"Module doesn't contain member {k}.")
            if freeze:
                module._no_grad.update(names)
            else:
                module._no_grad.difference_update(names)

        if recurse:
            mods = [m for _, m in self.named_modules()]
            if strict and keys is not None:
                # Recursively, a key need only be in some module of the tree.
                for k in [keys] if isinstance(keys, str) else keys:
                    if not any(k in m for m in mods):
                        raise KeyError(f"Module doesn't contain member {k}.")
            for m in mods:
                apply(m)
        else:
            apply(self)
        return self

    def freeze(self, *, recurse: bool = True, keys: Optional[Union[str, List[str]]] = None,
               strict: bool = False) -> "Module":
        """Freeze parameters so ``trainable_parameters`` skips them.

        Args:
            recurse: also freeze the children's parameters.
            keys: names of the parameters to freeze (default: all).
            strict: raise ``KeyError`` if a key is missing from a module.

        Returns:
            The module.
        """
        return self._set_no_grad(True, recurse, keys, strict)

    def unfreeze(self, *, recurse: bool = True, keys: Optional[Union[str, List[str]]] = None,
                 strict: bool = False) -> "Module":
        """Undo :meth:`freeze` (same arguments)."""
        return self._set_no_grad(False, recurse, keys, strict)

    # -- modes ----------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training mode (affects Dropout, BatchNorm) on every module."""
        for _, m in self.named_modules():
            m._set_training_mode(mode)
        return self

    def _set_training_mode(self, mode: bool):
        self._training = mode

    def eval(self) -> "Module":
        """Set evaluation mode."""
        return self.train(False)

    def set_dtype(self, dtype, predicate: Optional[Callable] = lambda x: mx.issubdtype(x, mx.floating)):
        """Cast the parameters whose dtype passes ``predicate`` to ``dtype``.

        Args:
            dtype: the new dtype.
            predicate: which dtypes to cast (default: floating types).
        """
        predicate = predicate or (lambda x: True)
        self.apply(lambda x: x.astype(dtype) if predicate(x.dtype) else x)

    # -- weights files ------------------------------------------------------
    def load_weights(self, file_or_weights: Union[str, List[Tuple[str, Any]]], strict: bool = True) -> "Module":
        """Load weights from a ``.npz``/``.safetensors`` file or a list of pairs.

        Args:
            file_or_weights: a path, or a list of ``(dotted_name, array)``.
            strict: require exactly the model's parameters with matching
                shapes; otherwise load what is given.

        Returns:
            The module.
        """
        weights = file_or_weights
        if isinstance(weights, str):
            weights = list(mx.load(weights).items())
        if strict:
            new = dict(weights)
            current = dict(tree_flatten(self.parameters()))
            extras = sorted(set(new) - set(current))
            if extras:
                raise ValueError(f"Received {len(extras)} parameters not in model: \n"
                                 + ",\n".join(extras) + ".")
            missing = sorted(set(current) - set(new))
            if missing:
                raise ValueError(f"Missing {len(missing)} parameters: \n" + ",\n".join(missing) + ".")
            for k, v in current.items():
                w = new[k]
                if not isinstance(w, mx.array):
                    raise ValueError(f"Expected mx.array but received {type(w)} for parameter {k}")
                if w.shape != v.shape:
                    raise ValueError(f"Expected shape {v.shape} but received shape {w.shape} for parameter {k}")
        if len(weights) != 0:
            self.update(tree_unflatten(weights), strict=False)
        return self

    def save_weights(self, file: str):
        """Save the parameters to ``file`` (``.npz`` or ``.safetensors``)."""
        params = dict(tree_flatten(self.parameters()))
        if file.endswith(".npz"):
            mx.savez(file, **params)
        elif file.endswith(".safetensors"):
            mx.save_safetensors(file, params)
        else:
            raise ValueError("Unsupported file extension. Use '.npz' or '.safetensors'.")


def _unwrap(model, key, value, filter_fn, map_fn, is_leaf_fn):
    """Recursive helper of ``filter_and_map``."""
    if is_leaf_fn(model, key, value):
        return map_fn(value)
    if isinstance(value, Module):
        return {
            k: _unwrap(value, k, v, filter_fn, map_fn, is_leaf_fn)
            for k, v in value.items()
            if filter_fn(value, k, v)
        }
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sub = f"{key}.{k}"
            out[k] = _unwrap(model, sub, v, filter_fn, map_fn, is_leaf_fn) if filter_fn(model, sub, v) else {}
        return out
    if isinstance(value, (list, tuple)):
        out = []
        for i, v in enumerate(value):
            sub = f"{key}.{i}"
            out.append(_unwrap(model, sub, v, filter_fn, map_fn, is_leaf_fn) if filter_fn(model, sub, v) else {})
        return out
    raise RuntimeError("Unexpected leaf found while traversing the module")


def _update_tree(dst, src, strict, leaf_type, kind):
    """Recursive helper of ``update`` / ``update_modules``: write leaves of
    ``src`` of type ``leaf_type`` into the containers of ``dst``.

    What happens at each entry follows the value there now: a leaf (an array for ``update``,
    a module for ``update_modules``) is replaced; a container (dict, list, tuple, or a plain
    value such as an int or a string inside a list) is walked with the matching part of
    ``src``, so the empty ``{}`` that ``parameters()`` and ``leaf_modules()`` give for plain
    values is a no-op and trees from those methods always round-trip.
    """
    if isinstance(src, dict):
        items = src.items()
        has = (lambda k: k in dst) if isinstance(dst, dict) else (lambda k: False)
    elif isinstance(src, list):
        items = enumerate(src)
        has = lambda i: isinstance(dst, (list, tuple)) and i < len(dst)  # noqa: E731
    else:
        if strict:
            raise ValueError(f"Received invalid type: {type(src).__name__}.")
        return
    for k, new in items:
        if not has(k):
            if strict and isinstance(src, list):
                raise ValueError(f"List index {k} is out of bounds for destination of length "
                                 f"{len(dst) if isinstance(dst, (list, tuple)) else 0}.")
            if strict:
                raise ValueError(f'Module does not have {"sub-module" if kind == "module" else kind} '
                                 f'named "{k}".')
            continue
        cur = dst[k]
        if kind == "module":
            if isinstance(new, Module):
                if isinstance(cur, Module):
                    dst[k] = new
                elif strict:
                    raise ValueError(f"Received invalid type: {type(new).__name__}.")
            elif isinstance(cur, (dict, list, tuple)):
                _update_tree(cur, new, strict, leaf_type, kind)
            elif strict and new != {}:
                raise ValueError(f"Received invalid type: {type(new).__name__}.")
        elif isinstance(cur, leaf_type):
            if strict and not isinstance(new, leaf_type):
                raise ValueError(f"Received invalid type: {type(new).__name__}.")
            dst[k] = new
        else:
            _update_tree(cur, new, strict, leaf_type, kind)
