"""Deployments: content-addressed, versioned per process, specs cached; running instances keep
their version."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import ProcessFileErrors
from engine.db import db
from engine.models import Deployment, ProcessDefinition, ProcessInstance
from tests.conftest import MONA, SALLY

BPMN = Path(__file__).parent / "bpmn"


def three_steps(title: str = "Book it") -> dict[str, bytes]:
    text = (BPMN / "three_steps.bpmn").read_text().replace('name="Book it"', f'name="{title}"')
    return {"three_steps.bpmn": text.encode()}


def test_identical_content_is_a_noop(engine):
    first = engine.deploy(three_steps())
    again = engine.deploy(three_steps())
    assert first.created and first.new_versions == {"three_steps": 1}
    assert not again.created and again.deployment_id == first.deployment_id
    assert db.session.scalar(select(func.count()).select_from(Deployment)) == 1


def test_change_makes_next_version_and_running_instances_keep_theirs(engine):
    engine.deploy(three_steps())
    old = engine.start_process("three_steps", {}, SALLY)
    result = engine.deploy(three_steps("Book the request"))
    assert result.new_versions == {"three_steps": 2}
    new = engine.start_process("three_steps", {}, SALLY)
    assert db.session.get(ProcessInstance, old).process_version == 1
    assert db.session.get(ProcessInstance, new).process_version == 2
    # drive both to the last task: each shows the title of its own version
    for task in engine.tasks_for(SALLY).tasks:
        engine.complete_task(task.id, SALLY, {"subject": "x", "amount": 1})
    for task in engine.tasks_for(MONA).tasks:
        engine.complete_task(task.id, MONA, {"decision": "approve"})
    acct = SALLY.__class__.of("alex", "accounting")
    titles = {t.instance_id: t.title for t in engine.tasks_for(acct).tasks}
    assert titles == {old: "Book it", new: "Book the request"}


def test_unchanged_process_in_a_new_deployment_keeps_its_version(engine):
    engine.deploy(three_steps())
    result = engine.deploy({**three_steps(), "loop.bpmn": (BPMN / "loop.bpmn").read_bytes()})
    assert result.new_versions == {"loop": 1}
    assert result.unchanged == ["three_steps"]


def test_spec_is_parsed_once_and_shared(engine):
    engine.deploy(three_steps())
    engine.start_process("three_steps", {}, SALLY)
    assert len(engine._specs) == 1
    engine._cache.clear()
    engine.start_process("three_steps", {}, SALLY)
    assert len(engine._specs) == 1


def test_one_bad_file_deploys_nothing(engine):
    bad = (BPMN / "loop.bpmn").read_text().replace("count += 1", "import os")
    with pytest.raises(ProcessFileErrors) as err:
        engine.deploy({**three_steps(), "loop.bpmn": bad.encode()})
    assert "loop.bpmn:" in str(err.value) and "count_up" in str(err.value) and "import" in str(err.value)
    assert db.session.scalar(select(func.count()).select_from(ProcessDefinition)) == 0
    assert db.session.scalar(select(func.count()).select_from(Deployment)) == 0


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        b'<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&xxe;</bpmn:definitions>',
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]>\n<lolz>&lol3;</lolz>',
    ],
)
def test_hostile_xml_refused_through_deploy(engine, payload):
    with pytest.raises(ProcessFileErrors, match="DOCTYPE"):
        engine.deploy({"evil.bpmn": payload})
    assert db.session.scalar(select(func.count()).select_from(Deployment)) == 0
