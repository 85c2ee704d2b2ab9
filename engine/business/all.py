"""Import every business module (registers their tables and service operations) and let each
hook itself into an engine (`install(engine)`, e.g. mail notices for new tasks)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

from . import __path__ as _package_path

MODULES: list[ModuleType] = [
    importlib.import_module(f"{__package__}.{info.name}")
    for info in pkgutil.iter_modules(_package_path)
    if info.name != "all"
]


def install(engine: Any) -> None:
    for module in MODULES:
        hook = getattr(module, "install", None)
        if hook is not None:
            hook(engine)
