"""Forms are read again when their file changes: a designer's save in one process reaches the
validators every other process (gunicorn worker, scheduler) keeps."""

from __future__ import annotations

import json
import os

import pytest

from engine import InvalidData
from engine.forms import FormRegistry


def test_a_changed_form_file_is_used_without_a_restart(tmp_path):
    form = tmp_path / "p" / "t.json"
    form.parent.mkdir()
    form.write_text(json.dumps({"type": "object", "properties": {"note": {"type": "string"}}}))
    registry = FormRegistry(tmp_path)
    assert registry.validate("p/t.json", {"note": "x"}) == {"note": "x"}

    form.write_text(
        json.dumps(
            {
                "type": "object",
                "required": ["note"],
                "properties": {"note": {"type": "string", "minLength": 2}},
            }
        )
    )
    stat = form.stat()
    os.utime(form, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a later save, whatever the clock
    with pytest.raises(InvalidData) as refused:
        registry.validate("p/t.json", {"note": "x"})
    assert refused.value.errors[0].field == "note"
