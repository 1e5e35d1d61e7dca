"""``mx.export_to_dot``: the graph behind some arrays in Graphviz DOT."""
from __future__ import annotations

import os

from kiln.graph.array import array

__all__ = ["export_to_dot"]


def export_to_dot(file, *outputs, **kwargs) -> None:
    """Write the graph that computes ``outputs`` as a Graphviz DOT digraph.

    Array nodes are boxes labelled with shape and dtype; primitive
    applications are ellipses labelled with the primitive's name. Computed
    arrays (no longer attached to a graph) appear as leaves.

    Args:
        file: A path, or a text file object with ``write``.
        *outputs: Arrays (or lists/tuples of arrays) whose graph to write.
    """
    flat: list = []
    stack = list(reversed(outputs)) + list(kwargs.values())
    while stack:
        o = stack.pop()
        if isinstance(o, array):
            flat.append(o)
        elif isinstance(o, (list, tuple)):
            stack.extend(reversed(o))
        elif isinstance(o, dict):
            stack.extend(reversed(list(o.values())))
        else:
            raise ValueError(f"[export_to_dot] Expected arrays, got {type(o).__name__}.")
    names: dict = {}
    lines = ["digraph {", "  rankdir=LR;"]

    def name(a) -> str:
        n = names.get(id(a))
        if n is None:
            n = names[id(a)] = f"a{len(names)}"
            label = "(" + ",".join(str(d) for d in a.shape) + ") " + a.dtype.name
            lines.append(f'  {n} [shape=box, label="{label}"];')
        return n

    seen_prims: set = set()
    keep: list = []  # keep visited nodes alive so ids stay unique
    stack = list(flat)
    while stack:
        a = stack.pop()
        keep.append(a)
        name(a)
        if a._prim is None or a._buf is not None or not a._inputs and a._prim is None:
            continue
        outs = a._sibs if a._sibs is not None else (a,)
        key = id(outs[0])
        if key in seen_prims:
            continue
        seen_prims.add(key)
        p = f"p{len(seen_prims)}"
        lines.append(f'  {p} [label="{a._prim.name}"];')
        for i in a._inputs:
            lines.append(f"  {name(i)} -> {p};")
            stack.append(i)
        for o in outs:
            keep.append(o)
            lines.append(f"  {p} -> {name(o)};")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if hasattr(file, "write"):
        file.write(text)
    else:
        with open(os.fspath(file), "w") as f:
            f.write(text)
