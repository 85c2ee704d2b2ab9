"""Sign in, sign out, the signed-in user as an engine `Actor`, and every user's own profile."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    has_request_context,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import format_timedelta, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import HiddenField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp

from engine import Actor
from engine.db import db
from engine.models import User

from . import security, tokens

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"

# the languages the product speaks; each user picks one on their profile
LANGUAGES: dict[str, str] = {
    "en": "English",
    "pl": "Polski",
    "lt": "Lietuvių",
    "ru": "Русский",
    "zh": "中文",
}


def language_choices() -> list[SelectChoice]:
    return [SelectChoice(code, name) for code, name in LANGUAGES.items()]


EMAIL = Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message=_l("Enter an e-mail address like name@example.com."))
_dummy_hash: list[str] = []


class SignedIn(UserMixin):  # type: ignore[misc]
    """The user of this request and the token of their sign-in (the id Flask-Login keeps)."""

    def __init__(self, user: User, token: str) -> None:
        self.user = user
        self.token = token

    def get_id(self) -> str:
        return self.token

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def display_name(self) -> str:
        return self.user.display_name or self.user.username

    @property
    def roles(self) -> frozenset[str]:
        return self.user.roles

    @property
    def language(self) -> str:
        return self.user.language

    @property
    def actor(self) -> Actor:
        return Actor(self.user.username, self.user.roles)


@login_manager.user_loader
def _load(token: str) -> SignedIn | None:
    live = security.load_login_session(token)
    return SignedIn(live.user, live.token) if live else None


@login_manager.unauthorized_handler
def _unauthorized() -> Any:
    if request.path.endswith(".json") or request.accept_mimetypes.best == "application/json":
        return jsonify(error=_("Please sign in.")), 401
    flash(_("Please sign in to see this page."), "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def select_locale() -> str:
    if not has_request_context():
        return "en"
    if current_user and current_user.is_authenticated and current_user.language in LANGUAGES:
        return str(current_user.language)
    return request.accept_languages.best_match(list(LANGUAGES)) or "en"


@bp.app_context_processor
def _locale() -> dict[str, Any]:
    return {"current_locale": str(get_locale() or "en")}


def current_actor() -> Actor:
    actor: Actor = current_user.actor
    return actor


F = TypeVar("F", bound=Callable[..., Any])


def role_required(role: str) -> Callable[[F], F]:
    """Signed in and holding `role`, checked on the request itself (not only hidden in menus)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if role not in current_user.roles:
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorate


def safe_next(target: str | None) -> str | None:
    """A path on this site to go back to, or None: never an address elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def check_password(user: User | None, password: str) -> bool:
    """True if `user` is active and `password` is theirs; as slow for unknown users as known ones."""
    if user is None or not user.password_hash:
        if not _dummy_hash:
            _dummy_hash.append(generate_password_hash("no such user"))
        check_password_hash(_dummy_hash[0], password)
        return False
    return bool(check_password_hash(user.password_hash, password)) and user.active


class LoginForm(FlaskForm):  # type: ignore[misc]
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=80)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])
    next = HiddenField()


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or url_for("inbox.index"))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
    error, status = None, 200
    if form.validate_on_submit():
        username = form.username.data.strip()
        wait = security.locked_for(username)
        if wait is not None:
            error = _(
                "Too many failed sign-ins. Try again in %(time)s.",
                time=format_timedelta(wait, threshold=1, add_direction=False),
            )
            status = 429
        else:
            user = db.session.scalar(select(User).where(User.username == username))
            if check_password(user, form.password.data) and user is not None:
                security.clear_failures(username)
                target = safe_next(form.next.data) or url_for("inbox.index")
                # a new session: nothing from before the sign-in survives it (no fixation)
                session.clear()
                token = security.start_login_session(user)
                login_user(SignedIn(user, token))
                session.permanent = True
                flash(_("Welcome, %(name)s.", name=user.display_name or user.username), "success")
                return redirect(target)
            security.record_failure(username)
            error = _("Unknown username or wrong password.")
            status = 401
    elif request.method == "POST":
        status = 422
    demo_password = None
    if current_app.config.get("DEMO_MODE"):
        from .demo import DEMO_PASSWORD

        demo_password = DEMO_PASSWORD
    return render_template("auth/login.html", form=form, error=error, demo_password=demo_password), status


@bp.post("/logout")
def logout() -> Any:
    if current_user.is_authenticated:
        security.end_login_session(current_user.token)
    logout_user()
    session.clear()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


class ProfileForm(FlaskForm):  # type: ignore[misc]
    display_name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    email = StringField(_l("E-mail"), validators=[Optional(), Length(max=200), EMAIL])
    language = SelectField(_l("Language"), choices=language_choices())
    current_password = PasswordField(_l("Current password"), validators=[Optional(), Length(max=200)])
    new_password = PasswordField(
        _l("New password"),
        validators=[Optional(), Length(min=8, max=200, message=_l("At least 8 characters."))],
    )
    confirm_password = PasswordField(
        _l("New password again"),
        validators=[EqualTo("new_password", message=_l("The two new passwords differ."))],
    )


class TokenForm(FlaskForm):  # type: ignore[misc]
    name = StringField(
        _l("Name of the new token"),
        validators=[DataRequired(), Length(max=tokens.MAX_NAME_LENGTH)],
        description=_l("What will use it, e.g. “Website lead form”."),
    )


def _profile_page(
    form: ProfileForm, token_form: TokenForm | None = None, status: int = 200, **new_token: Any
) -> Any:
    user: User = current_user.user
    return render_template(
        "auth/profile.html",
        form=form,
        user=user,
        token_form=token_form or TokenForm(prefix="token", formdata=None),
        api_tokens=tokens.live_tokens(user.id),
        **new_token,
    ), status


@bp.route("/profile", methods=["GET", "POST"])
def profile() -> Any:
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    user: User = current_user.user
    form = ProfileForm(obj=None if request.method == "POST" else user)
    if form.validate_on_submit():
        if form.new_password.data:
            if not check_password(user, form.current_password.data or ""):
                form.current_password.errors.append(_("This is not your current password."))
                return _profile_page(form, status=422)
            user.password_hash = generate_password_hash(form.new_password.data)
        user.display_name = form.display_name.data.strip()
        user.email = (form.email.data or "").strip()
        user.language = form.language.data
        db.session.commit()
        if form.new_password.data:
            security.end_user_sessions(user.id, keep_token=current_user.token)
        flash(_("Your profile is saved."), "success")
        return redirect(url_for("auth.profile"))
    return _profile_page(form, status=422 if request.method == "POST" else 200)


@bp.post("/profile/tokens")
def create_api_token() -> Any:
    """A new API token, shown on the page this POST answers with — once: it is kept only as a
    hash, and never put in a redirect, a flash message or the session."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    user: User = current_user.user
    token_form = TokenForm(prefix="token")
    if token_form.validate_on_submit():
        try:
            row, token = tokens.create_token(user, token_form.name.data)
        except tokens.TokenRefused:
            limit = tokens.MAX_TOKENS_PER_USER
            token_form.name.errors.append(
                _("You have %(n)d tokens: revoke one before you create another.", n=limit)
            )
        else:
            return _profile_page(ProfileForm(obj=user), new_token=token, new_token_name=row.name)
    return _profile_page(ProfileForm(obj=user), token_form, status=422)


@bp.post("/profile/tokens/<int:token_id>/revoke")
def revoke_api_token(token_id: int) -> Any:
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    row = tokens.revoke_token(current_user.user.id, token_id)  # another user's token: NotFound -> 404
    flash(_("The token “%(name)s” is revoked: it no longer works.", name=row.name), "success")
    return redirect(url_for("auth.profile", _anchor="api-tokens"))
