"""Users and roles, for administrators: create, assign and remove roles, deactivate (their
claimed tasks go back to the role's queue), reset passwords. Each change is an audit event."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash
from wtforms import PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp
from wtforms.widgets import CheckboxInput, ListWidget

from engine.db import db
from engine.errors import Conflict, NotFound
from engine.models import AuditEvent, HumanTask, Role, User, UserRole
from engine.users import ROLES, add_user, ensure_roles

from . import security
from .auth import EMAIL, current_actor, language_choices, login_manager
from .inbox import runtime

bp = Blueprint("admin", __name__, url_prefix="/admin")
USERNAME = Regexp(
    r"^[A-Za-z0-9_.@-]{2,80}$", message=_l("2 to 80 letters, digits, dots, dashes, underscores or @.")
)


class RoleChoices(SelectMultipleField):  # type: ignore[misc]
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


def _role_titles() -> dict[str, str]:
    ensure_roles()
    titles = dict(db.session.execute(select(Role.name, Role.title)).tuples().all())
    return {name: _(titles.get(name) or ROLES.get(name) or name) for name in sorted(titles)}


def _role_choices() -> list[SelectChoice]:
    return [SelectChoice(name, title) for name, title in _role_titles().items()]


class NewUserForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[DataRequired(), USERNAME])
    display_name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    email = StringField(_l("E-mail"), validators=[Optional(), Length(max=200), EMAIL])
    language = SelectField(_l("Language"), choices=language_choices())
    roles = RoleChoices(_l("Roles"))
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(), Length(min=8, max=200, message=_l("At least 8 characters."))],
    )


class EditUserForm(FlaskForm):  # type: ignore[misc]
    display_name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    email = StringField(_l("E-mail"), validators=[Optional(), Length(max=200), EMAIL])
    language = SelectField(_l("Language"), choices=language_choices())
    roles = RoleChoices(_l("Roles"))


class PasswordResetForm(FlaskForm):  # type: ignore[misc]
    new_password = PasswordField(
        _l("New password"),
        validators=[DataRequired(), Length(min=8, max=200, message=_l("At least 8 characters."))],
    )
    confirm_password = PasswordField(
        _l("New password again"),
        validators=[EqualTo("new_password", message=_l("The two new passwords differ."))],
    )


class ConfirmForm(FlaskForm):  # type: ignore[misc]
    """Only the CSRF token: for the buttons that deactivate and reactivate."""


@bp.before_request
def _admins_only() -> Any:
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if "admin" not in current_user.roles:
        abort(403)
    return None


def _audit(event: str, user: User, **detail: Any) -> None:
    db.session.add(
        AuditEvent(
            at=security.now(),
            actor=current_user.username,
            event=event,
            instance_id=None,
            task_id=None,
            detail={"user": user.username, **detail},
        )
    )


def _user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _release_claims(user: User, roles: set[str] | None = None) -> int:
    """Give the user's claimed tasks (all, or those of `roles`) back to their roles' queues."""
    q = select(HumanTask.id).where(HumanTask.assignee == user.username, HumanTask.status == "claimed")
    if roles is not None:
        q = q.where(HumanTask.role.in_(sorted(roles)))
    released = 0
    for task_id in db.session.scalars(q).all():
        try:
            runtime().unclaim_task(task_id, current_actor())  # the engine writes the audit event
            released += 1
        except (Conflict, NotFound):
            continue  # completed or changed meanwhile: nothing to give back
    return released


@bp.get("/users")
def users() -> Any:
    rows = db.session.scalars(select(User).order_by(User.active.desc(), User.username)).all()
    last_seen = dict(
        db.session.execute(
            select(security.LoginSession.user_id, func.max(security.LoginSession.last_seen_at)).group_by(
                security.LoginSession.user_id
            )
        )
        .tuples()
        .all()
    )
    return render_template("admin/users.html", users=rows, last_seen=last_seen, role_titles=_role_titles())


@bp.route("/users/new", methods=["GET", "POST"])
def new_user() -> Any:
    form = NewUserForm()
    form.roles.choices = _role_choices()
    if form.validate_on_submit():
        username = form.username.data.strip()
        if db.session.scalar(select(func.count()).where(User.username == username)):
            form.username.errors.append(_("This username is taken."))
        else:
            user = add_user(
                username,
                list(form.roles.data or []),
                password=form.password.data,
                display_name=form.display_name.data.strip(),
                email=(form.email.data or "").strip(),
            )
            user.language = form.language.data
            _audit("user_created", user, roles=sorted(user.roles))
            db.session.commit()
            flash(
                _("%(name)s can now sign in as %(username)s.", name=user.display_name, username=username),
                "success",
            )
            return redirect(url_for("admin.users"))
    status = 422 if request.method == "POST" else 200
    return render_template("admin/new_user.html", form=form), status


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
def edit_user(user_id: int) -> Any:
    user = _user_or_404(user_id)
    form = EditUserForm(obj=None if request.method == "POST" else user)
    form.roles.choices = _role_choices()
    if request.method == "GET":
        form.roles.data = sorted(user.roles)
    if form.validate_on_submit():
        new_roles = set(form.roles.data or [])
        if user.id == current_user.user.id and "admin" not in new_roles:
            form.roles.errors.append(_("You cannot take the administrator role from yourself."))
        else:
            removed, added = set(user.roles) - new_roles, new_roles - set(user.roles)
            user.display_name = form.display_name.data.strip()
            user.email = (form.email.data or "").strip()
            user.language = form.language.data
            user.role_links = [UserRole(role_name=r) for r in sorted(new_roles)]
            if removed or added:
                _audit("user_roles_changed", user, added=sorted(added), removed=sorted(removed))
            db.session.commit()
            released = _release_claims(user, removed) if removed else 0
            flash(_("Saved %(name)s.", name=user.display_name), "success")
            if released:
                flash(_("%(n)d claimed tasks went back to their queues.", n=released), "info")
            return redirect(url_for("admin.edit_user", user_id=user.id))
    status = 422 if request.method == "POST" else 200
    return render_template(
        "admin/edit_user.html", user=user, form=form, password_form=PasswordResetForm(), confirm=ConfirmForm()
    ), status


@bp.post("/users/<int:user_id>/password")
def reset_password(user_id: int) -> Any:
    user = _user_or_404(user_id)
    password_form = PasswordResetForm()
    if not password_form.validate_on_submit():
        form = EditUserForm(obj=user)
        form.roles.choices = _role_choices()
        form.roles.data = sorted(user.roles)
        return render_template(
            "admin/edit_user.html", user=user, form=form, password_form=password_form, confirm=ConfirmForm()
        ), 422
    user.password_hash = generate_password_hash(password_form.new_password.data)
    _audit("user_password_reset", user)
    db.session.commit()
    security.end_user_sessions(
        user.id, keep_token=current_user.token if user.id == current_user.user.id else None
    )
    flash(
        _("The password of %(name)s is reset; they are signed out everywhere.", name=user.display_name),
        "success",
    )
    return redirect(url_for("admin.edit_user", user_id=user.id))


@bp.post("/users/<int:user_id>/deactivate")
def deactivate(user_id: int) -> Any:
    user = _user_or_404(user_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if user.id == current_user.user.id:
        flash(_("You cannot deactivate yourself."), "error")
        return redirect(url_for("admin.edit_user", user_id=user.id))
    user.active = False
    _audit("user_deactivated", user)
    db.session.commit()
    security.end_user_sessions(user.id)
    released = _release_claims(user)
    flash(
        _(
            "%(name)s is deactivated and signed out; %(n)d claimed tasks went back to their queues.",
            name=user.display_name,
            n=released,
        ),
        "success",
    )
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/activate")
def activate(user_id: int) -> Any:
    user = _user_or_404(user_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    user.active = True
    _audit("user_activated", user)
    db.session.commit()
    flash(_("%(name)s can sign in again.", name=user.display_name), "success")
    return redirect(url_for("admin.edit_user", user_id=user.id))
