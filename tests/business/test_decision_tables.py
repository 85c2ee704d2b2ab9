"""Every row of the four decision tables, at its boundaries, through the real DMN files, the
parser, and the sandboxed script engine the processes use."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from engine.instance import Instance
from engine.scripts import SandboxedScriptEngine
from engine.specs import parse_files

ROOT = Path(__file__).resolve().parents[2]

HARNESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="Defs_{d}"
  targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="decide_{d}" name="Decide" isExecutable="true">
    <bpmn:startEvent id="start" name="Start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:businessRuleTask id="decide" name="Decide">
      <bpmn:extensionElements><spiffworkflow:calledDecisionId>{d}</spiffworkflow:calledDecisionId>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:businessRuleTask>
    <bpmn:endEvent id="end" name="Done"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="decide"/>
    <bpmn:sequenceFlow id="f2" sourceRef="decide" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


def decide(decision: str, data: dict[str, Any]) -> dict[str, Any]:
    files = {
        f"decide_{decision}.bpmn": HARNESS.format(d=decision).encode(),
        f"{decision}.dmn": (ROOT / "processes" / f"{decision}.dmn").read_bytes(),
    }
    bundle = parse_files(files, None)
    process = f"decide_{decision}"
    inst = Instance.start(
        bundle.processes[process], bundle.subprocess_specs.get(process, {}), SandboxedScriptEngine(), data
    )
    inst.run()
    assert inst.completed
    return inst.data


@pytest.mark.parametrize(
    ("amount", "level"),
    [
        ("0.01", "auto"),
        ("499.99", "auto"),
        ("500.00", "manager"),
        ("4999.99", "manager"),
        ("5000.00", "director"),
        ("125000.00", "director"),
    ],
)
def test_purchase_approval_level(amount, level):
    assert (
        decide("purchase_approval_level", {"purchase_request": {"amount": amount}})["approval_level"] == level
    )


@pytest.mark.parametrize(
    ("discount", "total", "approval"),
    [
        ("0", "100.00", "none"),
        ("10", "50000.00", "none"),
        ("10.01", "19999.99", "manager"),
        ("20", "19999.99", "manager"),
        ("15", "20000.00", "director"),
        ("20", "90000.00", "director"),
        ("20.01", "100.00", "director"),
        ("100", "100.00", "director"),
    ],
)
def test_quote_discount_approval(discount, total, approval):
    data = {"quote": {"max_discount_percent": discount, "total_net": total}}
    assert decide("quote_discount_approval", data)["discount_approval"] == approval


@pytest.mark.parametrize(
    ("category", "days", "in_warranty", "threshold"),
    [
        ("electronics", None, False, "100.00"),
        ("refurbished", 182, True, "0.00"),
        ("refurbished", 183, False, "100.00"),
        ("accessory", 365, True, "0.00"),
        ("accessory", 366, False, "100.00"),
        ("appliance", 730, True, "0.00"),
        ("tool", 731, False, "100.00"),
        ("electronics", 0, True, "0.00"),
    ],
)
def test_warranty_check(category, days, in_warranty, threshold):
    out = decide("warranty_check", {"ticket": {"product_category": category, "days_since_purchase": days}})
    assert out["in_warranty"] is in_warranty
    assert out["chargeable"] is (not in_warranty)
    assert Decimal(str(out["approval_threshold"])) == Decimal(threshold)


@pytest.mark.parametrize(
    ("days", "level", "action"),
    [
        (-10, 0, "none"),
        (0, 0, "none"),
        (1, 1, "reminder_email"),
        (14, 1, "reminder_email"),
        (15, 2, "second_reminder_and_call"),
        (29, 2, "second_reminder_and_call"),
        (30, 3, "escalate"),
        (400, 3, "escalate"),
    ],
)
def test_dunning_level(days, level, action):
    out = decide("dunning_level", {"invoice_status": {"days_overdue": days}})
    assert (out["dunning_level"], out["dunning_action"]) == (level, action)
