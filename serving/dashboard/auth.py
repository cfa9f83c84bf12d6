"""Signing in to the dashboard: a signed session cookie (Starlette's, HttpOnly, SameSite=strict) holding
the user's name and a CSRF token; every form carries the token and a POST without the session's own token is
refused (403). Roles: a page or action names the least role it needs (:meth:`system_db.users.User.may`).

The cookie's signing key is ``REKINDLE_DASHBOARD_SECRET`` or a random key kept in
``<home>/dashboard/secret`` (created on first use, readable by its owner only), so every worker and
restart signs alike."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request

from system_db.users import User, UserRole, Users

SECRET_ENV = "REKINDLE_DASHBOARD_SECRET"
SESSION_HOURS = 8


def signing_key(home: Path) -> str:
    given = os.environ.get(SECRET_ENV)
    if given:
        return given
    path = home / "dashboard" / "secret"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf(request: Request, given: str | None) -> None:
    token = request.session.get("csrf")
    if not token or not given or not hmac.compare_digest(str(token), str(given)):
        raise HTTPException(403, "this form is stale or was not sent from the dashboard (CSRF token missing or wrong)")


class SignInNeededError(Exception):
    """No one is signed in: the app redirects to the sign-in page."""


def current_user(request: Request, users: Users) -> User:
    name = request.session.get("user")
    user = users.get(str(name)) if name else None
    if user is None:
        raise SignInNeededError
    return user


def require(user: User, role: UserRole) -> None:
    if not user.may(role):
        raise HTTPException(403, f"{user.name} is a {user.role}; this needs a {role}")
