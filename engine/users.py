"""People and their roles; the engine acts for an `Actor` built from these rows."""

from __future__ import annotations

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from .db import db
from .engine import Actor
from .errors import NotFound
from .instance import utcnow
from .models import Role, User, UserRole

ROLES = {
    "director": "Director",
    "manager": "Manager",
    "sales": "Sales",
    "marketing": "Marketing",
    "receptionist": "Receptionist",
    "customer_service": "Customer service",
    "dispatcher": "Dispatcher",
    "technician": "Technician",
    "order_entry": "Order entry",
    "inventory": "Inventory",
    "purchasing": "Purchasing",
    "accounting": "Accounting",
    "designer": "Process designer",
    "admin": "Administrator",
}


def ensure_roles(names: list[str] | None = None) -> None:
    existing = set(db.session.scalars(select(Role.name)))
    for name in names or list(ROLES):
        if name not in existing:
            db.session.add(Role(name=name, title=ROLES.get(name, name.replace("_", " ").title())))
    db.session.flush()


def add_user(
    username: str, roles: list[str], password: str | None = None, display_name: str = "", email: str = ""
) -> User:
    """Create the user, or update their roles (and password when given) if they exist."""
    ensure_roles(sorted(set(roles)))
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        user = User(
            username=username,
            display_name=display_name or username,
            email=email,
            created_at=utcnow(),
            active=True,
        )
        db.session.add(user)
    if password:
        user.password_hash = generate_password_hash(password)
    user.role_links = [UserRole(role_name=r) for r in sorted(set(roles))]
    db.session.commit()
    return user


def actor_for(username: str) -> Actor:
    user = db.session.scalar(select(User).where(User.username == username, User.active.is_(True)))
    if user is None:
        raise NotFound(f"no active user named {username!r}")
    return Actor(user.username, user.roles)
