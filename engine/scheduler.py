"""The APScheduler tick. The database is the schedule: the tick only asks the engine to fire
what is due (APScheduler job stores cannot be shared between processes; the timer table can).

Each tick first writes the heartbeat of its process (one `scheduler_heartbeat` row per engine
`worker_id`), which readiness and metrics read: a scheduler whose ticks stop, or hang, shows as
a heartbeat that grows old. Heartbeat times come from the engine's clock, like timer due times.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import delete, func, select, update

from .business.mail import notify_overdue_tasks
from .mailer import send_pending
from .models import SchedulerHeartbeat

log = logging.getLogger(__name__)

DEFAULT_TICK_SECONDS = 0.5
# heartbeat rows of scheduler processes silent this long are deleted (by the next one to start)
FORGET_HEARTBEATS_AFTER = timedelta(days=7)


def tick(app: Any) -> int:
    """One tick: fire every due timer, then queue overdue-task notices and send due mail, each
    on its own (one that fails is logged and never stops the others). Enters the app context
    itself; returns how many instances the timers advanced."""
    with app.app_context():
        engine = app.extensions["engine"]
        try:
            if _heartbeat_due(engine):
                _guarded(engine, "writing the heartbeat", lambda: record_heartbeat(engine))
            fired = _guarded(engine, "firing timers", engine.fire_due_timers)
            _guarded(engine, "queueing overdue notices", lambda: notify_overdue_tasks(engine.now()))
            _guarded(engine, "sending mail", lambda: send_pending(engine.now(), app.config))
            return int(fired or 0)
        finally:
            if hasattr(engine.session, "remove"):
                engine.session.remove()


# a heartbeat at most this often: a commit every 0.5 s tick would take SQLite's write lock for nothing
HEARTBEAT_EVERY = timedelta(seconds=5)
_last_heartbeat: dict[str, datetime] = {}


def _heartbeat_due(engine: Any) -> bool:
    last = _last_heartbeat.get(engine.worker_id)
    now = engine.now()
    return last is None or not (last <= now < last + HEARTBEAT_EVERY)


def record_heartbeat(engine: Any) -> None:
    """Say this scheduler process ticked now: one row per engine `worker_id`, written at each
    tick; the first tick of a process also forgets processes long gone."""
    session, now = engine.session, engine.now()
    updated = session.execute(
        update(SchedulerHeartbeat)
        .where(SchedulerHeartbeat.worker_id == engine.worker_id)
        .values(last_tick_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not updated:
        session.execute(
            delete(SchedulerHeartbeat)
            .where(SchedulerHeartbeat.last_tick_at < now - FORGET_HEARTBEATS_AFTER)
            .execution_options(synchronize_session=False)
        )
        session.add(
            SchedulerHeartbeat(
                worker_id=engine.worker_id,
                host=socket.gethostname()[:200],
                pid=os.getpid(),
                started_at=now,
                last_tick_at=now,
            )
        )
    session.commit()
    _last_heartbeat[engine.worker_id] = now


def last_heartbeat(engine: Any) -> datetime | None:
    """When any scheduler process last ticked, or None if none ever did."""
    value = engine.session.scalar(select(func.max(SchedulerHeartbeat.last_tick_at)))
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def ticking_schedulers(engine: Any, within: timedelta) -> int:
    """How many scheduler processes ticked during the last `within`."""
    since = engine.now() - within
    return int(
        engine.session.scalar(
            select(func.count())
            .select_from(SchedulerHeartbeat)
            .where(SchedulerHeartbeat.last_tick_at >= since)
        )
        or 0
    )


def _guarded(engine: Any, what: str, run: Callable[[], Any]) -> Any:
    try:
        return run()
    except Exception:
        log.exception("scheduler tick failed %s", what)
        engine.session.rollback()
        return None


def _add_job(scheduler: Any, app: Any, seconds: float) -> None:
    # The first run is immediate: timers that fell due while everything was down fire once at
    # start-up. max_instances=1 keeps the ticks of one process from overlapping.
    scheduler.add_job(
        tick,
        "interval",
        args=[app],
        seconds=seconds,
        id="fire_due_timers",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),
    )


def start_background(app: Any, seconds: float = DEFAULT_TICK_SECONDS) -> BackgroundScheduler:
    """A scheduler thread inside the web process (the demo)."""
    scheduler = BackgroundScheduler(daemon=True)
    _add_job(scheduler, app, seconds)
    scheduler.start()
    return scheduler


def run_forever(app: Any, seconds: float = DEFAULT_TICK_SECONDS, stop: threading.Event | None = None) -> None:
    """`backoffice scheduler`: its own process in production; several may run on PostgreSQL."""
    if stop is not None:
        scheduler = BackgroundScheduler()
        _add_job(scheduler, app, seconds)
        scheduler.start()
        stop.wait()
        scheduler.shutdown()
        return
    blocking = BlockingScheduler()
    _add_job(blocking, app, seconds)
    signal.signal(signal.SIGTERM, lambda *_: blocking.shutdown(wait=False))
    worker = app.extensions["engine"].worker_id
    log.info("scheduler %s ticking every %ss", worker, seconds, extra={"worker_id": worker})
    blocking.start()
