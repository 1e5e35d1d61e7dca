"""Tree utilities (``mlx.utils``): functions over nested lists, tuples and dicts of leaves.

Re-exports of the one tree module, ``kiln/_tree.py``.
"""
from kiln._tree import (tree_flatten, tree_map, tree_map_with_path, tree_merge, tree_reduce,  # noqa: F401
                        tree_unflatten)

__all__ = ["tree_map", "tree_map_with_path", "tree_flatten", "tree_unflatten", "tree_reduce",
           "tree_merge"]
