"""The admin pages: the dashboard's users and the service's API keys (issue 15).

What ``rekindle users ...`` and ``rekindle keys ...`` do, for an admin in the browser. Every page and action
needs the admin role; every action the form's CSRF token. A refused change (bad role, short password, a user
that exists, an unknown key) re-renders its page with the message and status 422; a done change redirects
(303) back to its page. A new key's plain text is shown once, on the page that answers its creation: it is
never stored, redirected to, nor put in the session."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from serving.dashboard.site import Site, href
from system_db.access import ROLES, AccessError, Key, KeyRing
from system_db.users import USER_ROLES, User, UserError


def newest_first(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Rows of :meth:`KeyRing.list` (in no order of their own), the latest created first."""
    return sorted(rows, key=lambda r: str(r["created_at"]), reverse=True)


def routes(site: Site) -> list[Route]:
    def users_page(
        request: Request, user: User, error: str | None = None, form: dict[str, str] | None = None
    ) -> Response:
        return site.page(request, user, "admin_users.html", 422 if error else 200, users=site.users.list(),
                         roles=USER_ROLES, error=error, form=form or {})  # fmt: skip

    def keys_page(
        request: Request,
        user: User,
        error: str | None = None,
        form: dict[str, str] | None = None,
        created: Key | None = None,
        plain: str | None = None,
    ) -> Response:
        keys = newest_first(KeyRing(site.store).list())
        return site.page(request, user, "admin_keys.html", 422 if error else 200, keys=keys, roles=ROLES,
                         error=error, form=form or {}, created=created, plain=plain)  # fmt: skip

    def users(request: Request) -> Response:
        return users_page(request, site.user(request, "admin"))

    async def create_user(request: Request) -> Response:
        user = site.user(request)
        form = await site.form(request, user, "admin")
        name, role = form.get("name", ""), form.get("role", "")
        try:
            await run_in_threadpool(site.users.create, name, role, form.get("password", ""))  # scrypt: ~0.1 s
        except UserError as exc:  # the entered name and role come back; the password never does
            return users_page(request, user, str(exc), {"name": name, "role": role})
        return RedirectResponse(href(request, "/admin/users"), status_code=303)

    async def disable_user(request: Request) -> Response:
        user = site.user(request)
        await site.form(request, user, "admin")
        name = request.path_params["name"]
        if name == user.name:  # else the last admin could lock everyone out of these pages
            return users_page(request, user, f"you are signed in as {name!r}: another admin must disable you")
        try:
            site.users.disable(name)
        except UserError as exc:
            return users_page(request, user, str(exc))
        return RedirectResponse(href(request, "/admin/users"), status_code=303)

    def keys(request: Request) -> Response:
        return keys_page(request, site.user(request, "admin"))

    async def create_key(request: Request) -> Response:
        user = site.user(request)
        form = await site.form(request, user, "admin")
        try:
            key, plain = KeyRing(site.store).create(form.get("name", ""), form.get("role", ""))
        except AccessError as exc:
            return keys_page(request, user, str(exc), form=form)
        response = keys_page(request, user, created=key, plain=plain)
        response.headers["Cache-Control"] = "no-store"  # the one page with the plain key: kept by no cache
        return response

    async def revoke_key(request: Request) -> Response:
        user = site.user(request)
        await site.form(request, user, "admin")
        try:
            KeyRing(site.store).revoke(request.path_params["key_id"])
        except AccessError as exc:
            return keys_page(request, user, str(exc))
        return RedirectResponse(href(request, "/admin/keys"), status_code=303)

    return [
        Route("/admin/users", users, methods=["GET"], name="admin_users"),
        Route("/admin/users", create_user, methods=["POST"], name="admin_create_user"),
        # a name may hold "/" (any printable character): the path convertor takes it whole
        Route("/admin/users/{name:path}/disable", disable_user, methods=["POST"], name="admin_disable_user"),
        Route("/admin/keys", keys, methods=["GET"], name="admin_keys"),
        Route("/admin/keys", create_key, methods=["POST"], name="admin_create_key"),
        Route("/admin/keys/{key_id}/revoke", revoke_key, methods=["POST"], name="admin_revoke_key"),
    ]
