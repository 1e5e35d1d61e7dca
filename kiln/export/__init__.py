"""Exporting traced functions to files and importing them (kiln's format and MLX's ``.mlxfn``)."""
from .api import (FunctionExporter, ImportedFunction, export_function, export_mlx_function, exporter,
                  import_function)
from .dot import export_to_dot

__all__ = ["export_function", "import_function", "exporter", "FunctionExporter", "ImportedFunction",
           "export_to_dot", "export_mlx_function"]
