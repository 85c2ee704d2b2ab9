"""Purchase requests through the approvals pages: above 5,000 the manager and then the director
approve; the requester never approves their own request, even holding the manager role (no
button, and a forged POST is refused); small requests approved several at once."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def request_purchase(person, lines: list[tuple[str, str, str]], reason: str, step: str) -> tuple[int, str]:
    """Request a purchase from the Start menu; returns (instance id, request number)."""
    person.start("Request a purchase", f"{step}-form")
    for n, (product, qty, price) in enumerate(lines):
        person.fill_named(
            {f"lines[{n}][product]": product, f"lines[{n}][qty]": qty, f"lines[{n}][unit_price]": price}
        )
    person.fill({"Suggested vendor": "Central Components GmbH", "Reason": reason, "Needed by": "2026-12-20"})
    person.click(person.main.get_by_role("button", name="Start"), f"{step}-started")
    [flash] = person.flashes()
    started = re.search(r"no\. (\d+) started \((PR-\d{4}-\d{4})\)", flash)
    assert started, flash
    return int(started.group(1)), started.group(2)


def queue_row(person, number: str):
    """The row of the approvals queue whose link names the document."""
    return person.main.locator("tr[data-task-id]").filter(
        has=person.page.get_by_role("link", name=number, exact=True)
    )


def approve_from_queue(person, number: str, amount: str, step: str) -> None:
    person.open("/approvals", f"{step}-queue")
    row = queue_row(person, number)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(amount)
    expect(row).to_contain_text(re.compile("paul", re.IGNORECASE))  # the requester
    person.click(row.get_by_role("link", name=number, exact=True), f"{step}-detail")
    expect(person.main).to_contain_text(number)
    expect(person.main).to_contain_text(amount)
    expect(person.main).to_contain_text(re.compile(r"LAP-14|Laptop 14"))
    approved = person.click(
        person.main.locator('button[name="decision"][value="approve"]'), f"{step}-approved"
    )
    assert approved.status == 200, person.text()
    person.open("/approvals", f"{step}-queue-after")
    expect(queue_row(person, number)).to_have_count(0)


def test_above_5000_goes_to_the_manager_then_the_director(people):
    paul = people("paul")
    _, number = request_purchase(paul, [("LAP-14", "9", "820.00")], "Laptops for the support team", "request")

    mona = people("mona")
    approve_from_queue(mona, number, "7,380.00", "manager")

    # the manager's approval is not enough above 5,000: the director's queue has it now
    paul.open("/inbox", "inbox-waiting")
    assert not [t for t in paul.inbox_titles() if number in t]
    dora = people("dora")
    approve_from_queue(dora, number, "7,380.00", "director")

    # approved: purchasing chooses the vendor
    paul.open("/inbox", "inbox-approved")
    assert f"Order {number}: choose vendor" in paul.inbox_titles()


def test_the_requester_cannot_approve_their_own_request(people):
    max_ = people("max")  # purchasing and manager
    instance_id, number = request_purchase(
        max_, [("LAP-14", "9", "820.00")], "Laptops for the warehouse", "request"
    )
    max_.open(f"/instances/{instance_id}", "instance")
    approval = max_.main.get_by_role("link", name=re.compile(f"Approve purchase request {number}"))
    task_id = int(re.search(r"/tasks/(\d+)$", approval.get_attribute("href")).group(1))

    max_.open("/approvals", "queue")  # not in his queue
    expect(queue_row(max_, number)).to_have_count(0)
    max_.open(f"/approvals/{task_id}", "approval-page")  # and no button where it is
    expect(max_.main.locator('button[name="decision"]')).to_have_count(0)
    forged = max_.forge_post(f"/approvals/{task_id}", {"decision": "approve", "reason": ""})
    assert forged.status == 403, forged.status
    opened = max_.open(f"/tasks/{task_id}", "task-page")  # the task page says the same
    assert opened.status == 403
    expect(max_.main.locator(f"form[action$='/tasks/{task_id}']")).to_have_count(0)
    forged = max_.forge_post(f"/tasks/{task_id}", {"decision": "approve"})
    assert forged.status == 403, forged.status

    mona = people("mona")  # still waiting for someone else
    mona.open("/approvals", "queue")
    expect(queue_row(mona, number)).to_have_count(1)


def test_small_requests_approved_together(people):
    paul = people("paul")
    _, first = request_purchase(paul, [("LAP-14", "2", "820.00")], "Two spare laptops", "first")
    _, second = request_purchase(paul, [("DOCK-1", "12", "85.00")], "Docks for the hot desks", "second")

    mona = people("mona")
    mona.open("/approvals", "queue")
    for number in (first, second):
        queue_row(mona, number).locator('input[type="checkbox"][name="task_ids"]').check()
    done = mona.click(mona.main.locator('button[name="bulk"][value="approve"]'), "bulk-approved")
    assert done.status == 200, mona.text()
    for number in (first, second):  # a result per document
        expect(mona.main).to_contain_text(number)
    mona.open("/approvals", "queue-after")
    for number in (first, second):
        expect(queue_row(mona, number)).to_have_count(0)

    paul.open("/inbox", "inbox-approved")
    for number in (first, second):
        assert f"Order {number}: choose vendor" in paul.inbox_titles()
