"""Per-user API tokens: created on the profile page, shown once, kept only as a SHA-256 hash.

A token is `bo_` and 43 random URL-safe characters (256 bits); the table keeps its hash and its
first characters (the prefix, to tell tokens apart on the profile page), never the token. A
token acts as its user with the roles the user holds at the time of each request; revoking it,
or deactivating the user, ends it at once. `last_used_at` is written at most once a minute.

The table lives here rather than in `engine/models.py` because only the web app uses it."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import DateTime, ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, db
from engine.errors import NotFound
from engine.models import User

from . import security

if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model

TOKEN_PREFIX = "bo_"
PREFIX_LENGTH = 10  # "bo_" and 7 random characters: enough to tell a user's tokens apart
MAX_NAME_LENGTH = 100
MAX_TOKENS_PER_USER = 20  # live (not revoked) tokens
MAX_TOKEN_LENGTH = 200  # anything longer is not one of ours: refused before any lookup
LAST_USED_PRECISION = timedelta(minutes=1)


class ApiToken(Model):
    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TokenRefused(ValueError):
    """A token cannot be created as asked (the message says why, in English)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def live_tokens(user_id: int) -> list[ApiToken]:
    """The user's tokens that are not revoked, newest first."""
    return list(
        db.session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.id.desc())
        )
    )


def create_token(user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`: the row, and the token itself — the only time it is known."""
    name = " ".join(name.split())
    if not name:
        raise TokenRefused("a token needs a name")
    if len(name) > MAX_NAME_LENGTH:
        raise TokenRefused(f"a token name has at most {MAX_NAME_LENGTH} characters")
    count = db.session.scalar(
        select(func.count(ApiToken.id)).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    )
    if (count or 0) >= MAX_TOKENS_PER_USER:
        raise TokenRefused(f"at most {MAX_TOKENS_PER_USER} tokens; revoke one first")
    token = new_token()
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(token),
        prefix=token[:PREFIX_LENGTH],
        created_at=security.now(),
    )
    db.session.add(row)
    db.session.commit()
    return row, token


def revoke_token(user_id: int, token_id: int) -> ApiToken:
    """Revoke one of the user's own tokens (revoking twice changes nothing). NotFound if the
    token is not theirs."""
    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != user_id:
        raise NotFound(f"no API token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = security.now()
        db.session.commit()
    return row


def authenticate(token: str) -> User | None:
    """The active user a live token belongs to, or None. Notes when it was used (once a minute
    at most: a busy integration must not write a row per request)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        return None
    found = db.session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    ).first()
    if found is None:
        return None
    row, user = found
    if not user.active:
        return None
    moment = security.now()
    if row.last_used_at is None or moment - _aware(row.last_used_at) >= LAST_USED_PRECISION:
        row.last_used_at = moment
        db.session.commit()
    return user
