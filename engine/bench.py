"""`backoffice bench`: the engine measured against bare SpiffWorkflow, one JSON object per line.

Every benchmark builds its own app on a fresh SQLite file in a temporary folder, runs the
migrations, deploys the BPMN it needs from `engine/bench_processes/` and removes the folder
afterwards. Each printed line is

    {"metric": ..., "value": ..., "unit": ..., "bare": ..., "ratio": ..., "scale": ...}

where `bare` is the same workload on bare SpiffWorkflow in memory in the same run and
`ratio` is value / bare (null where there is no meaningful bare figure); a few lines carry
a `note`. Progress goes to stderr.

Groups (`--only`): throughput, inbox, history, timers, web.
"""

from __future__ import annotations

import gc
import json
import math
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

GROUPS = ("throughput", "inbox", "history", "timers", "web")
BENCH_DIR = Path(__file__).resolve().parent / "bench_processes"
FORMS_DIR = BENCH_DIR / "forms"
EPOCH = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Sizes:
    throughput: int
    inbox: tuple[int, int]
    history: tuple[int, ...]
    timers: int
    timers_1s: int
    web: int


SIZES = {
    "small": Sizes(
        throughput=300,
        inbox=(1_000, 20_000),
        history=(10, 100, 240, 300),
        timers=2_000,
        timers_1s=200,
        web=20_000,
    ),
    "full": Sizes(
        throughput=2_000,
        inbox=(1_000, 100_000),
        history=(10, 100, 240, 1_000),
        timers=10_000,
        timers_1s=200,
        web=100_000,
    ),
}
HISTORY_WINDOW = 9  # steps measured at each checkpoint; the median is reported
INBOX_QUERIES = 200
INBOX_ROLES = tuple(f"team_{i:02d}" for i in range(20))
INBOX_USERS = 50
TICK_SECONDS_BARE = 0.05


# -- output -----------------------------------------------------------------------------------------
_T0 = time.perf_counter()
_WHO = ["bench"]


def _progress(message: str) -> None:
    print(f"[{_WHO[0]} {time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def _round(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    if value == 0:
        return 0.0
    digits = max(0, 3 - math.floor(math.log10(abs(value))))
    return round(value, digits)


def _emit(
    scale: str,
    metric: str,
    value: float | None,
    unit: str,
    bare: float | None = None,
    note: str | None = None,
) -> None:
    ratio = value / bare if value is not None and bare else None
    line: dict[str, Any] = {
        "metric": metric,
        "value": _round(value),
        "unit": unit,
        "bare": _round(bare),
        "ratio": _round(ratio),
        "scale": scale,
    }
    if note:
        line["note"] = note
    print(json.dumps(line), flush=True)


def _ms(seconds: Sequence[float]) -> list[float]:
    return [s * 1000.0 for s in seconds]


def _pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


# -- the harness --------------------------------------------------------------------------------------
class ManualClock:
    """The engine clock the benchmarks move by hand."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; the engine writes UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _files(*names: str) -> dict[str, bytes]:
    return {name: (BENCH_DIR / name).read_bytes() for name in names}


@contextmanager
def _bench_app(
    clock: Callable[[], datetime] | None, bpmn: Sequence[str], *, all_tables: bool = False
) -> Iterator[Any]:
    """A fresh app on a fresh SQLite file, migrated, with `bpmn` deployed; the app context is pushed.

    `all_tables`: also `create_all()` after importing every business module, as the web tests do,
    so no page or task listener of the web app meets a missing table."""
    from flask_migrate import upgrade

    from webapp import create_app

    from .db import db

    tmp = tempfile.mkdtemp(prefix="backoffice-bench-")
    try:
        config: dict[str, Any] = {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/bench.db",
            "FORMS_DIR": str(FORMS_DIR),
            "TESTING": True,
        }
        if clock is not None:
            config["CLOCK"] = clock
        app = create_app(config)
        with app.app_context():
            upgrade()
            if all_tables:
                from .business import all as _business  # noqa: F401  (registers every business table)

                db.create_all()
            app.extensions["engine"].deploy(_files(*bpmn))
            try:
                yield app
            finally:
                db.session.remove()
                db.engine.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bare_spec(file_name: str, process_id: str) -> tuple[Any, dict[str, Any]]:
    """Parse once with SpiffWorkflow's own parser, as a bare host would."""
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser

    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(BENCH_DIR / file_name))
    return parser.get_spec(process_id), parser.get_subprocess_specs(process_id)


def _bare_start(spec: Any, subs: dict[str, Any], data: dict[str, Any]) -> Any:
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.util.task import TaskState

    wf = BpmnWorkflow(spec, subs)
    for task in wf.get_tasks(state=TaskState.READY):
        task.set_data(**data)
    wf.do_engine_steps()
    return wf


def _ready_user_tasks(wf: Any) -> list[Any]:
    from SpiffWorkflow.util.task import TaskState

    return list(wf.get_tasks(state=TaskState.READY, manual=True))


def _open_task_id(instance_id: int) -> int:
    from sqlalchemy import select

    from .db import db
    from .models import HumanTask

    task_id = db.session.scalar(
        select(HumanTask.id).where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
    )
    if task_id is None:
        raise RuntimeError(f"instance {instance_id} has no open task")
    return int(task_id)


def _count(model: Any, *where: Any) -> int:
    from sqlalchemy import func, select

    from .db import db

    return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


# -- 1. throughput ------------------------------------------------------------------------------------
def _three_steps_data(i: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("sales", {"subject": f"Laptop {i}", "amount": 1200 + i % 7}),
        ("manager", {"decision": "approve", "reason": "within budget"}),
        ("accounting", {"reference": f"B-{i:06d}"}),
    ]


def bench_throughput(scale: str, sizes: Sizes) -> None:
    from .engine import Actor
    from .models import ProcessInstance

    n = sizes.throughput
    actors = {
        "sales": Actor.of("sally", "sales"),
        "manager": Actor.of("mona", "manager"),
        "accounting": Actor.of("alex", "accounting"),
    }
    _progress(f"throughput: {n} instances of bench_three_steps on SQLite")
    with _bench_app(None, ["bench_three_steps.bpmn"]) as app:
        engine = app.extensions["engine"]

        def one(i: int, completions: list[float], starts: list[float]) -> None:
            t = time.perf_counter()
            instance_id = engine.start_process(
                "bench_three_steps", {}, actors["sales"], business_key=f"REQ-{i}"
            )
            starts.append(time.perf_counter() - t)
            for role, data in _three_steps_data(i):
                task_id = _open_task_id(instance_id)
                t = time.perf_counter()
                engine.complete_task(task_id, actors[role], data)
                completions.append(time.perf_counter() - t)

        for i in range(20):  # warm-up: spec cache, form validators, SQLite page cache
            one(-1 - i, [], [])
        completions: list[float] = []
        starts: list[float] = []
        t0 = time.perf_counter()
        for i in range(n):
            one(i, completions, starts)
        elapsed = time.perf_counter() - t0
        done = _count(ProcessInstance, ProcessInstance.status == "completed")
        if done != n + 20:
            raise RuntimeError(f"throughput: {done} of {n + 20} instances completed")

    _progress("throughput: bare SpiffWorkflow in memory")
    spec, subs = _bare_spec("bench_three_steps.bpmn", "bench_three_steps")

    def bare_one(i: int, completions: list[float]) -> None:
        wf = _bare_start(spec, subs, {"started_by": "sally"})
        for _role, data in _three_steps_data(i):
            t = time.perf_counter()
            task = _ready_user_tasks(wf)[0]
            task.set_data(**data)
            task.run()
            wf.do_engine_steps()
            completions.append(time.perf_counter() - t)
        if not wf.completed:
            raise RuntimeError("bare three steps did not complete")

    for i in range(20):
        bare_one(i, [])
    bare_completions: list[float] = []
    t0 = time.perf_counter()
    for i in range(n):
        bare_one(i, bare_completions)
    bare_elapsed = time.perf_counter() - t0

    _emit(
        scale,
        "throughput_instances_per_s",
        n / elapsed,
        "instances/s",
        n / bare_elapsed,
        note=f"{n} instances, start + 3 user tasks, each a separate command committed to SQLite "
        "(WAL), plus one indexed SELECT per task to find its id; target >= 150/s",
    )
    ms, bare_ms = _ms(completions), _ms(bare_completions)
    _emit(
        scale,
        "task_completion_median_ms",
        statistics.median(ms),
        "ms",
        statistics.median(bare_ms),
        note="engine.complete_task: form validation, load, run, save, commit; target <= 3 ms",
    )
    _emit(scale, "task_completion_p95_ms", _pct(ms, 95), "ms", _pct(bare_ms, 95))
    _emit(scale, "start_process_median_ms", statistics.median(_ms(starts)), "ms")


# -- 2. inbox -----------------------------------------------------------------------------------------
def _populate_inbox(n: int, definition_id: int, now: datetime, seed: int = 7) -> None:
    """`n` open tasks over 20 roles (skewed: the busiest role holds ~10%), one instance row each."""
    from sqlalchemy import insert

    from .db import db
    from .engine import NO_DUE
    from .models import HumanTask, ProcessInstance

    rng = random.Random(seed)
    weights = list(range(20, 0, -1))
    specs = (("enter_request", "Enter request"), ("approve", "Approve"), ("book", "Book it"))
    chunk = 10_000
    for first in range(0, n, chunk):
        instances: list[dict[str, Any]] = []
        tasks: list[dict[str, Any]] = []
        for i in range(first, min(n, first + chunk)):
            key = f"REQ-{i:07d}"
            started = now - timedelta(minutes=rng.uniform(1, 60 * 24 * 30))
            starter = f"user{rng.randrange(INBOX_USERS)}"
            instances.append(
                {
                    "id": i + 1,
                    "definition_id": definition_id,
                    "process_id": "bench_three_steps",
                    "process_version": 1,
                    "status": "running",
                    "business_key": key,
                    "revision": 2,
                    "started_by": starter,
                    "started_at": started,
                    "updated_at": started,
                    "completed_at": None,
                    "serializer_version": "1.5",
                    "state": "{}",
                }
            )
            spec_id, title = specs[rng.randrange(3)]
            claimed = rng.random() < 0.05
            due = None if rng.random() < 0.1 else now + timedelta(hours=rng.uniform(-240, 480))
            priority = rng.choice((30, 50, 50, 50, 80))
            tasks.append(
                {
                    "id": i + 1,
                    "instance_id": i + 1,
                    "task_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "spec_id": spec_id,
                    "process_id": "bench_three_steps",
                    "title": f"{title} {key}",
                    "role": rng.choices(INBOX_ROLES, weights)[0],
                    "assignee": f"user{rng.randrange(INBOX_USERS)}" if claimed else None,
                    "excluded": f"|{starter}|" if spec_id == "approve" else "",
                    "form_ref": f"bench_three_steps/{spec_id}.json",
                    "status": "claimed" if claimed else "open",
                    "priority": priority,
                    "priority_rank": 1000 - priority,
                    "due_at": due,
                    "due_key": due or NO_DUE,
                    "created_at": started + timedelta(seconds=5),
                    "claimed_at": started + timedelta(minutes=1) if claimed else None,
                    "completed_at": None,
                    "completed_by": None,
                    "document_type": "request",
                    "document_key": key,
                    "business_key": key,
                    "revision": 2 if claimed else 1,
                }
            )
        db.session.execute(insert(ProcessInstance), instances)
        db.session.execute(insert(HumanTask), tasks)
        db.session.commit()


def _inbox_run(n: int) -> tuple[dict[str, list[float]], int]:
    from sqlalchemy import select

    from .db import db
    from .engine import Actor, _encode_cursor
    from .models import ProcessDefinition

    clock = ManualClock()
    with _bench_app(clock, ["bench_three_steps.bpmn"]) as app:
        engine = app.extensions["engine"]
        definition_id = db.session.scalar(select(ProcessDefinition.id))
        t0 = time.perf_counter()
        _populate_inbox(n, int(definition_id or 0), clock())
        _progress(f"inbox: {n} open tasks inserted in {time.perf_counter() - t0:.1f}s")
        actors = [
            Actor.of(f"user{j % INBOX_USERS}", INBOX_ROLES[j % len(INBOX_ROLES)])
            for j in range(INBOX_QUERIES)
        ]
        for actor in actors[:20]:  # warm-up
            engine.tasks_for(actor, sort="due", limit=50)
            db.session.remove()
        times: dict[str, list[float]] = {"due": [], "page2": [], "overdue": []}
        full_pages = 0
        for actor in actors:
            t = time.perf_counter()
            page = engine.tasks_for(actor, sort="due", limit=50)
            times["due"].append(time.perf_counter() - t)
            db.session.remove()
            if not page.tasks:
                raise RuntimeError(f"inbox: {actor} got no tasks")
            full_pages += page.next_cursor is not None
            # a role with fewer than 51 tasks has no next page: ask for the page after its last task
            cursor = page.next_cursor or _encode_cursor("due", page.tasks[-1])
            t = time.perf_counter()
            page2 = engine.tasks_for(actor, sort="due", limit=50, cursor=cursor)
            times["page2"].append(time.perf_counter() - t)
            db.session.remove()
            if page2.tasks and page2.tasks[0].id in {v.id for v in page.tasks}:
                raise RuntimeError("inbox: page 2 repeats page 1")
            t = time.perf_counter()
            engine.tasks_for(actor, sort="due", limit=50, overdue=True)
            times["overdue"].append(time.perf_counter() - t)
            db.session.remove()
        return times, full_pages


def bench_inbox(scale: str, sizes: Sizes) -> None:
    small, large = sizes.inbox
    results: dict[int, dict[str, list[float]]] = {}
    full_pages: dict[int, int] = {}
    for n in (small, large):
        _progress(f"inbox: {n} open tasks over {len(INBOX_ROLES)} roles, {INBOX_QUERIES} queries per kind")
        results[n], full_pages[n] = _inbox_run(n)
    labels = {
        "due": "sort=due, limit=50, page 1",
        "page2": "sort=due, limit=50, page 2 (cursor)",
        "overdue": "sort=due, limit=50, overdue=True",
    }
    for kind in ("due", "page2", "overdue"):
        for n in (small, large):
            ms = _ms(results[n][kind])
            note = (
                f"{labels[kind]}; {n} open tasks over {len(INBOX_ROLES)} roles, inserted in bulk "
                "(instance rows without workflow state)"
            )
            if kind == "page2":
                note += f"; page 1 was full (a real next page) in {full_pages[n]}/{INBOX_QUERIES} queries"
            _emit(scale, f"inbox_{kind}_p50_ms_n{n}", statistics.median(ms), "ms", note=note)
            _emit(
                scale,
                f"inbox_{kind}_p95_ms_n{n}",
                _pct(ms, 95),
                "ms",
                note="target <= 10 ms at 100k" if n == large and kind == "due" else None,
            )
        growth = _pct(_ms(results[large][kind]), 95) / _pct(_ms(results[small][kind]), 95)
        _emit(
            scale,
            f"inbox_{kind}_p95_growth",
            growth,
            "x",
            note=f"p95 at {large} / p95 at {small} open tasks; target <= 2x",
        )


# -- 3. history ---------------------------------------------------------------------------------------
def _engine_history(checkpoints: Sequence[int]) -> tuple[dict[int, float], dict[int, float]]:
    """Median ms per user-task step at each checkpoint, and the stored state's size in KB."""
    from sqlalchemy import select

    from .db import db
    from .engine import Actor
    from .models import ProcessInstance

    actor = Actor.of("olga", "order_entry")
    result: dict[int, float] = {}
    sizes_kb: dict[int, float] = {}
    with _bench_app(None, ["bench_loop.bpmn"]) as app:
        engine = app.extensions["engine"]
        warm = engine.start_process("bench_loop", {"count": 0, "limit": 30}, actor)
        for _ in range(30):  # warm-up on another instance: spec cache, form validator, page cache
            engine.complete_task(_open_task_id(warm), actor, {"note": "warm-up"})
        instance_id = engine.start_process("bench_loop", {"count": 0, "limit": 10**9}, actor)
        passes = 0

        def step() -> float:
            task_id = _open_task_id(instance_id)
            t = time.perf_counter()
            engine.complete_task(task_id, actor, {"note": f"pass {passes + 1}"})
            return time.perf_counter() - t

        for checkpoint in checkpoints:
            while passes < checkpoint:
                step()
                passes += 1
            window = []
            for _ in range(HISTORY_WINDOW):
                window.append(step())
                passes += 1
            result[checkpoint] = statistics.median(window) * 1000
            sizes_kb[checkpoint] = (
                len(
                    db.session.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance_id))
                    or ""
                )
                / 1024
            )
            _progress(f"history: engine after {checkpoint} passes: {result[checkpoint]:.2f} ms/step")
            passes_seen = engine.instance_data(instance_id).get("count")
            if passes_seen != passes:
                raise RuntimeError(f"history: the instance counted {passes_seen} passes, expected {passes}")
    return result, sizes_kb


def _bare_history(checkpoints: Sequence[int]) -> tuple[dict[int, float | None], int | None]:
    """Median step ms at each checkpoint; and the pass after which bare SpiffWorkflow stalled."""
    spec, subs = _bare_spec("bench_loop.bpmn", "bench_loop")
    warm = _bare_start(spec, subs, {"count": 0, "limit": 30})
    while not warm.completed:
        task = _ready_user_tasks(warm)[0]
        task.run()
        warm.do_engine_steps()
    wf = _bare_start(spec, subs, {"count": 0, "limit": 10**9})
    result: dict[int, float | None] = {}
    passes = 0
    stalled: int | None = None

    def step() -> float | None:
        t = time.perf_counter()
        ready = _ready_user_tasks(wf)
        if not ready:
            return None
        task = ready[0]
        task.set_data(note="pass")
        task.run()
        wf.do_engine_steps()
        return time.perf_counter() - t

    for checkpoint in checkpoints:
        while stalled is None and passes < checkpoint:
            if step() is None:
                stalled = passes
            else:
                passes += 1
        window: list[float] = []
        while stalled is None and len(window) < HISTORY_WINDOW:
            took = step()
            if took is None:
                stalled = passes
            else:
                window.append(took)
                passes += 1
        result[checkpoint] = statistics.median(window) * 1000 if stalled is None else None
        if stalled is None:
            _progress(f"history: bare after {checkpoint} passes: {result[checkpoint]:.2f} ms/step")
    if stalled is not None:
        _progress(
            f"history: bare SpiffWorkflow stalled after {stalled} passes "
            f"(count={wf.last_task.data.get('count') if wf.last_task else '?'}, "
            f"ready user tasks={len(_ready_user_tasks(wf))}, tasks in tree={len(wf.tasks)}, "
            f"is_completed()={wf.is_completed()})"
        )
    return result, stalled


def bench_history(scale: str, sizes: Sizes) -> None:
    checkpoints = sizes.history
    _progress(f"history: gateway loop around a user task, checkpoints {list(checkpoints)}")
    engine_ms, state_kb = _engine_history(checkpoints)
    bare_ms, stalled = _bare_history(checkpoints)
    stall_note = (
        (
            f"bare SpiffWorkflow stalled after {stalled} passes: the task tree (~4 levels per pass) "
            "exceeds the iterators' max_depth=1000, do_engine_steps() and get_tasks() no longer see the "
            "READY user task and is_completed() returns True although count < limit; no further step is "
            "possible"
        )
        if stalled is not None
        else None
    )
    for checkpoint in checkpoints:
        bare = bare_ms[checkpoint]
        note = (
            f"median of {HISTORY_WINDOW} steps (complete_task + commit); "
            f"engine state {state_kb[checkpoint]:.0f} KB"
        )
        _emit(
            scale,
            f"history_step_ms_after_{checkpoint}",
            engine_ms[checkpoint],
            "ms",
            bare,
            note=note if bare is not None else f"{note}; {stall_note}",
        )
    first, last = checkpoints[0], checkpoints[-1]
    bare_growth_at = max((c for c in checkpoints if bare_ms[c] is not None), default=first)
    bare_first = bare_ms[first]
    bare_last = bare_ms[bare_growth_at]
    bare_growth = bare_last / bare_first if bare_first and bare_last else None
    growth_note = f"engine step at {last} passes / at {first} passes; target <= 3x"
    if bare_growth_at != last and bare_growth is not None:
        growth_note += f"; bare grew {bare_growth:.1f}x by {bare_growth_at} passes, then stalled"
        bare_growth = None
    _emit(
        scale, "history_step_growth", engine_ms[last] / engine_ms[first], "x", bare_growth, note=growth_note
    )


# -- 4. timers ----------------------------------------------------------------------------------------
def _rss_mb() -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) of this process in MB, from /proc."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None, None
    values: dict[str, float] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = float(rest.split()[0]) / 1024
    return values.get("VmRSS"), values.get("VmHWM")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def timers_child(n: int) -> dict[str, Any]:
    """Runs in a fresh interpreter so its peak RSS is the timer run's alone."""
    _WHO[0] = "bench/timers child"
    from .engine import Actor
    from .instance import engine_clock
    from .models import ProcessInstance, Timer

    out: dict[str, Any] = {"n": n}
    actor = Actor.of("sam", "sales")
    clock = ManualClock()
    with _bench_app(clock, ["bench_timer.bpmn"]) as app:
        engine = app.extensions["engine"]
        t0 = time.perf_counter()
        for i in range(n):
            engine.start_process("bench_timer", {"wait": "PT1H"}, actor, business_key=f"T-{i}")
            if (i + 1) % 2000 == 0:
                _progress(f"timers: {i + 1}/{n} instances waiting")
        out["start_s"] = time.perf_counter() - t0
        pending = _count(Timer, Timer.status == "pending")
        if pending != n:
            raise RuntimeError(f"timers: {pending} pending timers, expected {n}")
        gc.collect()
        rss_before, hwm_setup = _rss_mb()
        out["hwm_setup_mb"] = hwm_setup
        out["reset_peak"] = _reset_peak_rss()
        maxrss_before = _maxrss_mb()
        now = clock.advance(hours=1, seconds=1)
        t0 = time.perf_counter()
        fired = engine.fire_due_timers(now)
        out["fire_s"] = time.perf_counter() - t0
        _, hwm = _rss_mb()
        out["fired"] = fired
        out["rss_before_mb"] = rss_before
        out["hwm_during_fire_mb"] = hwm if out["reset_peak"] else None
        out["maxrss_before_mb"] = maxrss_before
        out["maxrss_mb"] = _maxrss_mb()
        done = _count(ProcessInstance, ProcessInstance.status == "completed")
        if done != n:
            raise RuntimeError(f"timers: {done} of {n} instances completed after firing")

    _progress(f"timers: bare SpiffWorkflow, {n} workflows in memory")
    spec, subs = _bare_spec("bench_timer.bpmn", "bench_timer")
    start = EPOCH
    with engine_clock(lambda: start):
        workflows = [_bare_start(spec, subs, {"wait": "PT1H"}) for _ in range(n)]
    later = start + timedelta(hours=1, seconds=1)
    with engine_clock(lambda: later):
        t0 = time.perf_counter()
        for wf in workflows:
            wf.refresh_timers()
            wf.do_engine_steps()
            if not wf.completed:
                wf.do_engine_steps()
        out["bare_fire_s"] = time.perf_counter() - t0
    out["bare_completed"] = sum(1 for wf in workflows if wf.completed)
    return out


def _timers_mass(scale: str, n: int) -> None:
    _progress(f"timers: {n} instances waiting on PT1H, fired at once (separate process for peak RSS)")
    code = (
        "import json, sys\nfrom engine.bench import timers_child\n"
        "print(json.dumps(timers_child(int(sys.argv[1]))))"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, str(n)], stdout=subprocess.PIPE, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"timers child failed with exit code {proc.returncode}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["fired"] != n or out["bare_completed"] != n:
        raise RuntimeError(f"timers: fired {out['fired']}, bare completed {out['bare_completed']} of {n}")
    _emit(
        scale,
        "timers_fired_per_s",
        n / out["fire_s"],
        "timers/s",
        n / out["bare_fire_s"],
        note=f"{n} PT1H timers due at once, engine.fire_due_timers(now) on a fast-forwarded clock; "
        "bare: the same workflows in memory, refresh_timers() + do_engine_steps(), with "
        "SpiffWorkflow's datetime.now redirected to the same fast-forwarded clock; target >= 500/s",
    )
    if out["hwm_setup_mb"] is not None and out["hwm_during_fire_mb"] is not None:
        peak = max(out["hwm_setup_mb"], out["hwm_during_fire_mb"])
        how = (
            f"VmHWM of the child process that started {n} instances and fired them (engine part only; bare "
            f"runs after it); RSS before firing {out['rss_before_mb']:.0f} MB; "
            f"ru_maxrss {out['maxrss_mb']:.0f} MB"
        )
        if out["maxrss_mb"] > peak + 5:
            how += " (Linux carries the parent's high-water mark across exec into ru_maxrss)"
    else:
        peak = out["maxrss_mb"]
        how = f"ru_maxrss of the child process that started {n} instances and fired them"
    _emit(scale, "timers_peak_rss_mb", peak, "MB", note=how)
    if out["hwm_during_fire_mb"] is not None:
        delta = out["hwm_during_fire_mb"] - out["rss_before_mb"]
        how = "peak RSS while firing (VmHWM reset before) minus RSS before firing"
    else:
        delta = out["maxrss_mb"] - out["maxrss_before_mb"]
        how = "ru_maxrss after firing minus before (peak could not be reset)"
    _emit(scale, "timers_fire_rss_delta_mb", delta, "MB", note=how)


def _timers_realtime(scale: str, n: int) -> None:
    from sqlalchemy import select

    from .db import db
    from .engine import Actor
    from .models import ProcessInstance, Timer
    from .scheduler import start_background

    _progress(f"timers: {n} PT1S timers on the real clock with the APScheduler tick running")
    actor = Actor.of("sam", "sales")
    with _bench_app(None, ["bench_timer.bpmn"]) as app:
        engine = app.extensions["engine"]
        tick = float(app.config["SCHEDULER_TICK_SECONDS"])
        scheduler = start_background(app, seconds=tick)
        try:
            wall0 = time.time()
            ids: list[int] = []
            due: dict[int, datetime] = {}
            for i in range(n):
                ids.append(
                    engine.start_process("bench_timer", {"wait": "PT1S"}, actor, business_key=f"S-{i}")
                )
                if len(ids) % 10 == 0 or len(ids) == n:  # read due times long before the first one fires
                    recent = select(Timer.instance_id, Timer.due_at).where(Timer.instance_id.in_(ids[-10:]))
                    due.update((r.instance_id, _aware(r.due_at)) for r in db.session.execute(recent))
                    db.session.rollback()
            started_s = time.time() - wall0
            seen: dict[int, datetime] = {}
            deadline = time.time() + 120
            while len(seen) < n and time.time() < deadline:
                rows = db.session.execute(
                    select(ProcessInstance.id, ProcessInstance.completed_at).where(
                        ProcessInstance.status == "completed", ProcessInstance.id.in_(ids)
                    )
                ).all()
                db.session.rollback()
                for row in rows:
                    seen.setdefault(row.id, _aware(row.completed_at))
                if len(seen) < n:
                    time.sleep(0.02)
            all_done_s = time.time() - wall0
        finally:
            scheduler.shutdown(wait=True)
    if len(due) < n:
        raise RuntimeError(f"timers: only {len(due)} of {n} timers were recorded before any fired")
    if len(seen) < n:
        _emit(scale, "timers_1s_max_lag_s", None, "s", note=f"only {len(seen)} of {n} fired within 120 s")
        return
    lags = [(seen[i] - due[i]).total_seconds() for i in ids]
    bare_lags, bare_all = _bare_realtime(n)
    _emit(
        scale,
        "timers_1s_max_lag_s",
        max(lags),
        "s",
        max(bare_lags),
        note=f"{n} PT1S timers started in {started_s:.2f}s; worst (completed_at - due_at); median "
        f"{statistics.median(lags):.2f}s; scheduler tick {tick}s; bare: in-memory loop refreshing "
        f"every {TICK_SECONDS_BARE}s; target <= 2 s, spiff-arena 62 s",
    )
    _emit(
        scale,
        "timers_1s_all_fired_s",
        all_done_s,
        "s",
        bare_all,
        note="from starting the first instance until all were seen completed (polled every 20 ms); "
        "anchors: bare 1.06 s, spiff-arena 62.5 s",
    )


def _bare_realtime(n: int) -> tuple[list[float], float]:
    spec, subs = _bare_spec("bench_timer.bpmn", "bench_timer")
    wall0 = time.time()
    started: list[tuple[Any, float]] = []
    for _ in range(n):
        t = time.time()
        started.append((_bare_start(spec, subs, {"wait": "PT1S"}), t + 1.0))
    lags: list[float] = []
    waiting = list(started)
    deadline = time.time() + 60
    while waiting and time.time() < deadline:
        still = []
        for wf, due in waiting:
            wf.refresh_timers()
            wf.do_engine_steps()
            if not wf.completed:
                wf.do_engine_steps()
            if wf.completed:
                lags.append(time.time() - due)
            else:
                still.append((wf, due))
        waiting = still
        if waiting:
            time.sleep(TICK_SECONDS_BARE)
    return lags, time.time() - wall0


def bench_timers(scale: str, sizes: Sizes) -> None:
    _timers_mass(scale, sizes.timers)
    _timers_realtime(scale, sizes.timers_1s)


# -- 5. web -------------------------------------------------------------------------------------------
WEB_USER = "wendy"  # holds the 20 roles of the bulk tasks and the three roles of bench_three_steps
WEB_REQUESTER = "rita"  # starts the real instances, so the four-eyes rule does not exclude wendy
WEB_PASSWORD = "bench web password"
WEB_STEP_ROLES = ("sales", "manager", "accounting")
WEB_REQUESTS = 200  # timed requests per kind
WEB_WARMUP = 20
WEB_COUNT_POLLS = 100  # timed GET /inbox/counts.json, after WEB_WARMUP // 2 untimed
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class _Browser:
    """The Flask test client used like a browser (it reads the form before it posts it).

    Each request runs in an app context of its own, as on a server, and the bench's own session
    ends its transaction first (on SQLite a transaction holds the write lock). A request is timed
    from the call to the response in hand, teardown included: the test client has no network, so
    this is the server's time for the request, in this process. `last_cpu` is the same request's
    CPU time (this thread, user + system): unlike the wall time it does not grow when other
    processes compete for the CPU, so the notes carry it as a cross-check."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = app.test_client()
        self.last_cpu = 0.0

    def open(self, method: str, url: str, data: dict[str, str] | None = None) -> tuple[Any, float]:
        from .db import db

        db.session.commit()
        cpu = time.thread_time()
        t = time.perf_counter()
        with self.app.app_context():
            response = self.client.open(url, method=method, data=data)
        took = time.perf_counter() - t
        self.last_cpu = time.thread_time() - cpu
        return response, took

    def page(self, url: str, expect: int = 200) -> tuple[str, float]:
        response, took = self.open("GET", url)
        if response.status_code != expect:
            raise RuntimeError(f"web: GET {url} answered {response.status_code}, expected {expect}")
        return str(response.get_data(as_text=True)), took

    @staticmethod
    def token(html: str, url: str) -> str:
        match = _CSRF.search(html)
        if match is None:
            raise RuntimeError(f"web: no CSRF token on {url}")
        return match.group(1)

    def login(self, username: str, password: str) -> float:
        html, _ = self.page("/login")
        fields = {"csrf_token": self.token(html, "/login"), "username": username, "password": password}
        response, took = self.open("POST", "/login", fields)
        if response.status_code != 302:
            raise RuntimeError(f"web: signing in as {username} answered {response.status_code}")
        return took


def _web_people() -> None:
    from .users import add_user

    # the real password hash (scrypt): one sign-in, so its ~0.1 s does not matter
    add_user(
        WEB_USER,
        [*INBOX_ROLES, *WEB_STEP_ROLES],
        password=WEB_PASSWORD,
        display_name="Wendy Web",
        email="wendy@example.com",
    )
    add_user(WEB_REQUESTER, ["sales"], display_name="Rita Requester", email="rita@example.com")
    for j in range(INBOX_USERS):  # the assignees of the claimed bulk tasks, shown by name
        add_user(f"user{j}", [INBOX_ROLES[j % len(INBOX_ROLES)]], display_name=f"User {j}")


def _web_form(spec_id: str, i: int) -> dict[str, str]:
    """What a user types into the form of bench_three_steps' task `spec_id` (all strings, as posted)."""
    steps = {"enter_request": 0, "approve": 1, "book": 2}
    _role, data = _three_steps_data(i)[steps[spec_id]]
    return {k: str(v) for k, v in data.items()}


def _web_run(n: int) -> dict[str, Any]:
    from sqlalchemy import select

    from .db import db
    from .engine import Actor
    from .models import HumanTask, ProcessDefinition, ProcessInstance

    out: dict[str, Any] = {}
    clock = ManualClock()
    with _bench_app(clock, ["bench_three_steps.bpmn"], all_tables=True) as app:
        engine = app.extensions["engine"]
        definition_id = db.session.scalar(select(ProcessDefinition.id))
        t0 = time.perf_counter()
        _populate_inbox(n, int(definition_id or 0), clock())
        _web_people()
        requester = Actor.of(WEB_REQUESTER, "sales")
        n_instances = math.ceil((WEB_REQUESTS + WEB_WARMUP) / 3)
        instance_ids = [
            engine.start_process("bench_three_steps", {}, requester, business_key=f"WEB-{i:04d}")
            for i in range(n_instances)
        ]
        db.session.commit()
        _progress(
            f"web: {n} open tasks inserted, {n_instances} bench_three_steps instances started "
            f"in {time.perf_counter() - t0:.1f}s"
        )

        browser = _Browser(app)
        out["login_ms"] = browser.login(WEB_USER, WEB_PASSWORD) * 1000

        # (1) the inbox: first page, default sort; every other request filtered to one busy role
        filters = [
            None if j % 2 == 0 else INBOX_ROLES[(j // 2) % len(INBOX_ROLES)] for j in range(WEB_REQUESTS)
        ]
        inbox: dict[str, list[float]] = {"all": [], "role": []}
        cpu: dict[str, list[float]] = {"inbox": [], "counts": [], "complete": []}
        for j, role in enumerate(filters[:WEB_WARMUP] + filters):
            url = f"/inbox?role={role}" if role else "/inbox"
            html, took = browser.page(url)
            if 'class="task-title"' not in html:
                raise RuntimeError(f"web: {url} shows no task")
            if j >= WEB_WARMUP:
                inbox["role" if role else "all"].append(took)
                cpu["inbox"].append(browser.last_cpu)
        out["inbox"] = inbox
        _progress(
            f"web: {WEB_REQUESTS} inbox pages, p95 {_pct(_ms(inbox['all'] + inbox['role']), 95):.1f} ms"
        )

        # (2) the counts the inbox polls
        counts: list[float] = []
        for j in range(WEB_WARMUP // 2 + WEB_COUNT_POLLS):
            response, took = browser.open("GET", "/inbox/counts.json")
            if response.status_code != 200 or not response.get_json().get("total"):
                raise RuntimeError(f"web: /inbox/counts.json answered {response.status_code}")
            if j >= WEB_WARMUP // 2:
                counts.append(took)
                cpu["counts"].append(browser.last_cpu)
        out["counts"] = counts
        _progress(f"web: {WEB_COUNT_POLLS} count polls, p95 {_pct(_ms(counts), 95):.1f} ms")

        # (3) completing real tasks: read the task page (its CSRF token), post the form
        completions: list[float] = []
        pages: list[float] = []
        done = 0
        for i, instance_id in enumerate(instance_ids):
            for _step in range(3):
                task_id = _open_task_id(instance_id)
                spec_id = db.session.scalar(select(HumanTask.spec_id).where(HumanTask.id == task_id))
                url = f"/tasks/{task_id}"
                html, took_page = browser.page(url)
                fields = {"csrf_token": browser.token(html, url), **_web_form(str(spec_id), i)}
                response, took = browser.open("POST", url, fields)
                if response.status_code != 302:
                    raise RuntimeError(
                        f"web: completing {spec_id} ({url}) answered {response.status_code}: "
                        f"{response.get_data(as_text=True)[:300]}"
                    )
                if WEB_WARMUP <= done < WEB_WARMUP + WEB_REQUESTS:
                    completions.append(took)
                    cpu["complete"].append(browser.last_cpu)
                    pages.append(took_page)
                done += 1
        out["complete"] = completions
        out["task_page"] = pages
        completed = _count(
            ProcessInstance, ProcessInstance.status == "completed", ProcessInstance.id.in_(instance_ids)
        )
        if completed != n_instances:
            raise RuntimeError(f"web: {completed} of {n_instances} instances completed through the web app")
        out["instances"] = n_instances
        out["cpu"] = cpu
        out.update(_web_operator_pages(app, browser, instance_ids[0]))
        _progress(f"web: {done} tasks completed through the web app, p95 {_pct(_ms(completions), 95):.1f} ms")
    return out


def _web_operator_pages(app: Any, browser: _Browser, instance_id: int) -> dict[str, list[float]]:
    """The pages and calls of operators and other systems, over the same data: the instance list
    as someone who sees only the instances they are involved in (the costlier query) and as an
    administrator (every instance) with a business-key filter, one instance's diagram states,
    the API's task list (the user of the inbox figures, by token), and the metrics."""
    from sqlalchemy import select

    from webapp.tokens import create_token  # the bench drives the web app; the engine never does

    from .db import db
    from .models import User
    from .users import add_user

    add_user("ada", ["admin"], password=WEB_PASSWORD, display_name="Ada Admin")
    wendy = db.session.scalars(select(User).where(User.username == WEB_USER)).one()
    token = create_token(wendy, "bench")[1]
    db.session.commit()
    admin = _Browser(app)
    admin.login("ada", WEB_PASSWORD)
    api = app.test_client()
    kinds = ("instances", "instances_admin", "diagram", "api", "metrics")
    out: dict[str, list[float]] = {k: [] for k in kinds}
    for j in range(WEB_WARMUP + WEB_REQUESTS):
        timed = j >= WEB_WARMUP
        for key, client, url in (
            ("instances", browser, "/instances/"),
            ("instances_admin", admin, f"/instances/?business_key=REQ-{j:04d}"),
            ("diagram", browser, f"/instances/{instance_id}/diagram.json"),
            ("metrics", browser, "/metrics"),
        ):
            response, took = client.open("GET", url)
            if response.status_code != 200:
                raise RuntimeError(f"web: GET {url} answered {response.status_code}")
            if timed:
                out[key].append(took)
        db.session.commit()
        t = time.perf_counter()
        with app.app_context():
            response = api.get("/api/v1/tasks?limit=25", headers={"Authorization": f"Bearer {token}"})
        took = time.perf_counter() - t
        if response.status_code != 200 or not response.get_json().get("tasks"):
            raise RuntimeError(f"web: GET /api/v1/tasks answered {response.status_code}")
        if timed:
            out["api"].append(took)
    _progress(
        f"web: instance list p95 {_pct(_ms(out['instances']), 95):.1f} ms, API tasks p95 "
        f"{_pct(_ms(out['api']), 95):.1f} ms"
    )
    return out


def bench_web(scale: str, sizes: Sizes) -> None:
    n = sizes.web
    _progress(f"web: the Flask app with {n} open tasks over {len(INBOX_ROLES)} roles, test client, SQLite")
    out = _web_run(n)
    how = (
        "server time: wall time of the Flask test client's request in this process (no network), "
        f"after signing in through /login as a user holding the {len(INBOX_ROLES)} roles of the {n} "
        "open tasks (inserted in bulk) and sales, manager, accounting; no bare: bare SpiffWorkflow has "
        "no web app"
    )
    timed = f"{WEB_REQUESTS} timed requests after {WEB_WARMUP} untimed"

    def cpu_p95(kind: str) -> str:
        return f"CPU time of the same requests (this thread): p95 {_pct(_ms(out['cpu'][kind]), 95):.1f} ms"

    inbox_all, inbox_role = _ms(out["inbox"]["all"]), _ms(out["inbox"]["role"])
    inbox = inbox_all + inbox_role
    _emit(
        scale,
        f"web_inbox_p50_ms_n{n}",
        statistics.median(inbox),
        "ms",
        note="GET /inbox: first page (25 rows, default sort: due, overdue first), counts per role, "
        f"rendered; half the requests for all the user's roles, half filtered to one of the "
        f"{len(INBOX_ROLES)} busy roles; {timed}; {how}",
    )
    _emit(
        scale,
        f"web_inbox_p95_ms_n{n}",
        _pct(inbox, 95),
        "ms",
        note="target: inbox page p95 <= 50 ms at 100,000 open tasks; "
        f"all roles p95 {_pct(inbox_all, 95):.1f} ms, one role p95 {_pct(inbox_role, 95):.1f} ms; "
        f"{cpu_p95('inbox')}",
    )
    complete = _ms(out["complete"])
    _emit(
        scale,
        f"web_complete_p50_ms_n{n}",
        statistics.median(complete),
        "ms",
        note=f"POST /tasks/<id> with valid form data and the CSRF token read from the task page (the GET "
        f"not timed): form parsing, engine.complete_task and commit, the next-task query, the redirect; "
        f"{WEB_REQUESTS} of the enter/approve/book tasks of {out['instances']} real bench_three_steps "
        f"instances started by another user, after {WEB_WARMUP} untimed; {how}",
    )
    _emit(
        scale,
        f"web_complete_p95_ms_n{n}",
        _pct(complete, 95),
        "ms",
        note=f"target: completion p95 <= 30 ms at 100,000 open tasks; {cpu_p95('complete')}",
    )
    counts = _ms(out["counts"])
    _emit(
        scale,
        f"web_counts_p50_ms_n{n}",
        statistics.median(counts),
        "ms",
        note="GET /inbox/counts.json (the inbox's polling: open tasks per role and the user's own); "
        f"{WEB_COUNT_POLLS} timed requests after {WEB_WARMUP // 2} untimed; {how}",
    )
    _emit(scale, f"web_counts_p95_ms_n{n}", _pct(counts, 95), "ms", note=cpu_p95("counts"))
    for key, metric, what in (
        (
            "instances",
            "web_instances_list_p95_ms",
            "GET /instances/ (first page of 50, newest first) as a user who sees only the instances "
            "they started or hold a task of",
        ),
        (
            "instances_admin",
            "web_instances_admin_filtered_p95_ms",
            "GET /instances/?business_key=... as "
            "an administrator (every instance), a different key each time",
        ),
        (
            "diagram",
            "web_instance_diagram_p95_ms",
            "GET /instances/<id>/diagram.json: the version's BPMN and the state of each element",
        ),
        (
            "api",
            "web_api_tasks_p95_ms",
            "GET /api/v1/tasks?limit=25 with a bearer token (token lookup, the inbox query, JSON)",
        ),
        (
            "metrics",
            "web_metrics_p95_ms",
            "GET /metrics from loopback (instances, tasks, timers, incidents grouped in the database)",
        ),
    ):
        values = _ms(out[key])
        _emit(
            scale,
            f"{metric}_n{n}",
            _pct(values, 95),
            "ms",
            note=f"{what}; median {statistics.median(values):.1f} ms; {n} instances and open tasks; "
            f"{timed}; no target",
        )
    page = _ms(out["task_page"])
    _emit(
        scale,
        f"web_task_page_p95_ms_n{n}",
        _pct(page, 95),
        "ms",
        note=f"GET /tasks/<id> before each timed completion: form, instance data and history rendered; "
        f"median {statistics.median(page):.1f} ms; no target; "
        f"the sign-in POST took {out['login_ms']:.0f} ms (scrypt)",
    )


# -- entry point --------------------------------------------------------------------------------------
BENCHMARKS: dict[str, Callable[[str, Sizes], None]] = {
    "throughput": bench_throughput,
    "inbox": bench_inbox,
    "history": bench_history,
    "timers": bench_timers,
    "web": bench_web,
}


def run_benchmarks(scale: str, only: set[str]) -> None:
    """Run the groups in `only` (all when empty) at `scale` ("small" or "full")."""
    if scale not in SIZES:
        raise SystemExit(f"unknown scale {scale!r}; use {' or '.join(SIZES)}")
    unknown = sorted(set(only) - set(GROUPS))
    if unknown:
        raise SystemExit(f"unknown benchmark group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    sizes = SIZES[scale]
    t0 = time.perf_counter()
    for name in GROUPS:
        if only and name not in only:
            continue
        started = time.perf_counter()
        BENCHMARKS[name](scale, sizes)
        _progress(f"{name}: done in {time.perf_counter() - started:.1f}s")
    _progress(f"all done in {time.perf_counter() - t0:.1f}s")
