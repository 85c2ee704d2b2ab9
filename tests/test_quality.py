"""ruff and mypy are part of the test run: a lint error fails the suite like any other defect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_check_is_clean():
    result = _run("ruff", "check", "engine", "webapp", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = _run("ruff", "format", "--check", "engine", "webapp", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_on_engine_is_clean():
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
