"""Import every business module: registers their tables and service operations."""

from __future__ import annotations

import importlib
import pkgutil

from . import __path__ as _package_path

for _module in pkgutil.iter_modules(_package_path):
    if _module.name != "all":
        importlib.import_module(f"{__package__}.{_module.name}")
