"""The APScheduler tick. The database is the schedule: the tick only asks the engine to fire
what is due (APScheduler job stores cannot be shared between processes; the timer table can)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from .business.mail import notify_overdue_tasks
from .mailer import send_pending

log = logging.getLogger(__name__)

DEFAULT_TICK_SECONDS = 0.5


def tick(app: Any) -> int:
    """One tick: fire every due timer, then queue overdue-task notices and send due mail, each
    on its own (one that fails is logged and never stops the others). Enters the app context
    itself; returns how many instances the timers advanced."""
    with app.app_context():
        engine = app.extensions["engine"]
        try:
            fired = _guarded(engine, "firing timers", engine.fire_due_timers)
            _guarded(engine, "queueing overdue notices", lambda: notify_overdue_tasks(engine.now()))
            _guarded(engine, "sending mail", lambda: send_pending(engine.now(), app.config))
            return int(fired or 0)
        finally:
            if hasattr(engine.session, "remove"):
                engine.session.remove()


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
    log.info("scheduler ticking every %ss", seconds)
    blocking.start()
