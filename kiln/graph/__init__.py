"""The graph floor: the array node (``array.py``), toposort and eval (``eval.py``), ``mx.eval``
(``evaluation.py``), in-place rebinding (``rebind.py``) and printing (``printing.py``)."""
