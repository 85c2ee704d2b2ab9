"""Sign-in state kept on the server, the brake on password guessing, and the headers and
cookie settings every response gets.

Two small tables live here rather than in `engine/models.py` because only the web app uses
them: `login_session` (one row per signed-in browser; signing out ends the row, so a copied
cookie is dead afterwards) and `login_throttle` (failed sign-ins per username and address).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, request
from sqlalchemy import DateTime, ForeignKey, Integer, String, UniqueConstraint, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, db
from engine.models import User

if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


class LoginSession(Model):
    """One signed-in browser. The cookie holds the token; the table holds its hash."""

    __tablename__ = "login_session"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")


class LoginThrottle(Model):
    """Failed sign-ins for one username from one address, and until when they are locked out."""

    __tablename__ = "login_throttle"
    __table_args__ = (UniqueConstraint("username", "ip"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80))
    ip: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def now() -> datetime:
    """The engine's clock, so tests move sign-in time the way they move process time."""
    moment: datetime = current_app.extensions["engine"].now()
    return moment


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def client_ip() -> str:
    return (request.remote_addr or "")[:64]


# -- sessions --------------------------------------------------------------------------------------
def start_login_session(user: User) -> str:
    """A fresh random token for a new sign-in; the caller puts it in the (cleared) session."""
    token = secrets.token_urlsafe(32)
    moment = now()
    # this user's sessions ended or idle for a month are of no use any more
    old = moment - timedelta(days=30)
    db.session.execute(
        delete(LoginSession).where(
            LoginSession.user_id == user.id,
            or_(LoginSession.ended_at < old, LoginSession.last_seen_at < old),
        )
    )
    db.session.add(
        LoginSession(
            token_hash=_hash(token),
            user_id=user.id,
            created_at=moment,
            last_seen_at=moment,
            ip=client_ip(),
            user_agent=(request.user_agent.string or "")[:300],
        )
    )
    db.session.commit()
    return token


@dataclass(frozen=True)
class LiveSession:
    user: User
    token: str


def load_login_session(token: str) -> LiveSession | None:
    """The user behind a session token, if the session is live and the user active."""
    if not token:
        return None
    row = db.session.execute(
        select(LoginSession, User)
        .join(User, User.id == LoginSession.user_id)
        .where(LoginSession.token_hash == _hash(token), LoginSession.ended_at.is_(None))
    ).first()
    if row is None:
        return None
    login, user = row
    if not user.active:
        return None
    moment = now()
    idle = timedelta(seconds=current_app.config["LOGIN_SESSION_IDLE_SECONDS"])
    last_seen = _aware(login.last_seen_at)
    if moment - last_seen > idle:
        login.ended_at = moment
        db.session.commit()
        return None
    if moment - last_seen > timedelta(minutes=5):  # one write per five minutes, not per request
        login.last_seen_at = moment
        db.session.commit()
    return LiveSession(user, token)


def end_login_session(token: str) -> None:
    db.session.execute(
        update(LoginSession)
        .where(LoginSession.token_hash == _hash(token), LoginSession.ended_at.is_(None))
        .values(ended_at=now())
    )
    db.session.commit()


def end_user_sessions(user_id: int, keep_token: str | None = None) -> None:
    """Sign a user out everywhere (deactivation, password change), optionally but this browser."""
    q = update(LoginSession).where(LoginSession.user_id == user_id, LoginSession.ended_at.is_(None))
    if keep_token:
        q = q.where(LoginSession.token_hash != _hash(keep_token))
    db.session.execute(q.values(ended_at=now()))
    db.session.commit()


# -- throttling ---------------------------------------------------------------------------------------
def locked_for(username: str) -> timedelta | None:
    """How long sign-in for this username from this address is still refused, if it is."""
    row = db.session.scalar(
        select(LoginThrottle).where(
            LoginThrottle.username == username.lower(), LoginThrottle.ip == client_ip()
        )
    )
    if row is None or row.locked_until is None:
        return None
    remaining = _aware(row.locked_until) - now()
    return remaining if remaining > timedelta(0) else None


def record_failure(username: str) -> None:
    """Count a failed sign-in; from the allowed number on, each further one locks out for twice
    as long as the last (30 s, 1 min, 2 min ... up to the configured maximum)."""
    config = current_app.config
    key = username.lower()[:80]
    moment = now()
    # forget streaks long over, so guessed usernames do not pile up
    stale = moment - timedelta(
        seconds=config["LOGIN_FAILURE_RESET_SECONDS"] + config["LOGIN_LOCKOUT_MAX_SECONDS"]
    )
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.last_failed_at < stale))
    for _attempt in range(2):  # a concurrent first failure may insert the row between our steps
        row = db.session.scalar(
            select(LoginThrottle).where(LoginThrottle.username == key, LoginThrottle.ip == client_ip())
        )
        try:
            if row is None:
                row = LoginThrottle(username=key, ip=client_ip(), failures=0, last_failed_at=moment)
                db.session.add(row)
            elif moment - _aware(row.last_failed_at) > timedelta(
                seconds=config["LOGIN_FAILURE_RESET_SECONDS"]
            ):
                row.failures = 0  # an old streak is forgiven
            row.failures += 1
            row.last_failed_at = moment
            over = row.failures - config["LOGIN_FREE_ATTEMPTS"]
            if over >= 0:
                seconds = min(config["LOGIN_LOCKOUT_SECONDS"] * 2**over, config["LOGIN_LOCKOUT_MAX_SECONDS"])
                row.locked_until = moment + timedelta(seconds=seconds)
            db.session.commit()
            return
        except IntegrityError:
            db.session.rollback()


def clear_failures(username: str) -> None:
    db.session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.username == username.lower(), LoginThrottle.ip == client_ip()
        )
    )
    db.session.commit()


# -- headers and cookies ----------------------------------------------------------------------------
def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.endpoint != "static" and "Cache-Control" not in headers:
        # pages show business data: never keep them in shared or back/forward caches
        headers["Cache-Control"] = "no-store"
    return response


# Defaults create_app puts into the config before the test or deployment config; each can be
# overridden there.
CONFIG_DEFAULTS: dict[str, Any] = {
    "SESSION_COOKIE_NAME": "backoffice_session",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,  # turned on by PREFERRED_URL_SCHEME=https (see init_app)
    "REMEMBER_COOKIE_HTTPONLY": True,
    "REMEMBER_COOKIE_SAMESITE": "Lax",
    "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
    "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the sign-in: no lost half-typed forms
    "LOGIN_SESSION_IDLE_SECONDS": 8 * 3600,
    "LOGIN_FREE_ATTEMPTS": 5,
    "LOGIN_LOCKOUT_SECONDS": 30,
    "LOGIN_LOCKOUT_MAX_SECONDS": 15 * 60,
    "LOGIN_FAILURE_RESET_SECONDS": 3600,
}


def init_app(app: Flask) -> None:
    """Secure cookies behind TLS, and the headers on every response."""
    if app.config.get("PREFERRED_URL_SCHEME") == "https":
        app.config.update(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True, WTF_CSRF_SSL_STRICT=True)
    app.after_request(_security_headers)
