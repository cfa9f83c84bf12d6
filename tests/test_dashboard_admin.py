"""The dashboard's admin pages (issue 15): an admin manages users and API keys; no one else may, not even by
GET; every change needs the form's CSRF token; a new key's plain text is shown once and then only its hash
is kept. Starlette's TestClient on the bare app (the service mounts it at /dashboard)."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable

import httpx
import pytest
from starlette.testclient import TestClient

from core.config import Config, load_config
from serving.dashboard.app import build
from system_db.access import KeyRing, check, split_key
from system_db.store import SystemStore
from system_db.users import Users

# scrypt costs ~50-100 ms a password: few users, each signed in once for the whole module
PASSWORDS = {"ada": "admin password 1", "ana": "correct horse battery", "vic": "viewer password 1"}
ROLES = {"ada": "admin", "ana": "marketer", "vic": "viewer"}
TARGET_USER = "tess"  # an active viewer no one signs in as: what refused actions try to disable
HOSTILE = "<script>alert(1)</script>x"
PAGES = ["/admin/users", "/admin/keys"]
ACTIONS = [  # (path, form fields) of every admin POST; {key_id} is an active key's
    ("/admin/users", {"name": "mallory", "role": "admin", "password": "a long enough password"}),
    (f"/admin/users/{TARGET_USER}/disable", {}),
    ("/admin/keys", {"name": "mallory-key", "role": "admin"}),
    ("/admin/keys/{key_id}/revoke", {}),
]
ACTION_IDS = ["create-user", "disable-user", "create-key", "revoke-key"]
DATE = r"<td>\d{4}-\d\d-\d\d \d\d:\d\d(?: [A-Z]{2,5}| [+-]\d\d)?</td>\s*"  # YYYY-MM-DD HH:MM, maybe a zone


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    cfg = load_config(home=tmp_path_factory.mktemp("dashboard-admin"))
    users = Users(SystemStore(cfg.system_db_url))
    for name, role in ROLES.items():
        users.create(name, role, PASSWORDS[name])
    users.create(TARGET_USER, "viewer", "target password 1")
    return cfg


@pytest.fixture(scope="module")
def store(cfg: Config) -> SystemStore:
    return SystemStore(cfg.system_db_url)


@pytest.fixture(scope="module")
def target_key(store: SystemStore) -> str:
    """An active key that refused actions try to revoke."""
    return KeyRing(store).create("target-key", "caller")[0].key_id


@pytest.fixture(scope="module")
def new_client(cfg: Config) -> Callable[[], TestClient]:
    app = build(lambda: cfg)
    return lambda: TestClient(app, follow_redirects=False)


def csrf(client: TestClient) -> str:
    """The session's CSRF token, as the sign-in form carries it."""
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").text)
    assert found, "no CSRF token on the sign-in form"
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str) -> TestClient:
    response = client.post("/signin", data={"name": name, "password": password, "csrf": csrf(client)})
    assert response.status_code == 303, f"{name} could not sign in: {response.status_code}"
    return client


@pytest.fixture(scope="module")
def clients(new_client: Callable[[], TestClient]) -> dict[str, TestClient]:
    """A signed-in client per seeded user, by name."""
    return {name: sign_in(new_client(), name, password) for name, password in PASSWORDS.items()}


@pytest.fixture(scope="module")
def admin(clients: dict[str, TestClient]) -> TestClient:
    return clients["ada"]


def post(
    client: TestClient, path: str, fields: dict[str, str] | None = None, token: str | None = "own"
) -> httpx.Response:
    """POST a form with the session's own CSRF token, another ``token``, or none (``token=None``)."""
    data = dict(fields or {})
    if token is not None:
        data["csrf"] = csrf(client) if token == "own" else token
    return client.post(path, data=data)


def state(store: SystemStore) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Every user and key as stored: what a refused action must leave as it was."""
    return Users(store).list(), sorted(KeyRing(store).list(), key=lambda k: str(k["key_id"]))


def message(response_text: str) -> str:
    """The page's error message, unescaped."""
    found = re.search(r'<p class="error" role="alert">(.*?)</p>', response_text, re.S)
    assert found, "the page shows no error"
    return html.unescape(found.group(1))


def session_payload(client: TestClient) -> str:
    """The decoded JSON in the client's signed session cookie."""
    cookie = client.cookies.get("rekindle_dashboard") or ""
    raw = cookie.split(".")[0]
    return base64.b64decode(raw + "=" * (-len(raw) % 4)).decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", p) for p in PAGES] + [("POST", p) for p, _ in ACTIONS[:3]] + [("POST", "/admin/keys/abc/revoke")],
    ids=["users", "keys", "create-user", "disable-user", "create-key", "revoke-key"],
)
def test_anonymous_requests_are_sent_to_sign_in(new_client: Callable[[], TestClient], method: str, path: str) -> None:
    response = new_client().request(method, path)
    assert response.status_code == 303
    assert response.headers["location"] == "/signin"


@pytest.mark.parametrize("name", ["ana", "vic"], ids=["marketer", "viewer"])
@pytest.mark.parametrize("path", PAGES, ids=["users", "keys"])
def test_marketers_and_viewers_may_not_read_admin_pages(
    clients: dict[str, TestClient], target_key: str, name: str, path: str
) -> None:
    response = clients[name].get(path)
    assert response.status_code == 403
    assert message(response.text) == f"{name} is a {ROLES[name]}; this needs a admin"
    assert TARGET_USER not in response.text and target_key not in response.text  # nothing of the listings


@pytest.mark.parametrize("name", ["ana", "vic"], ids=["marketer", "viewer"])
@pytest.mark.parametrize(("path", "fields"), ACTIONS, ids=ACTION_IDS)
def test_marketers_and_viewers_may_not_change_anything(
    clients: dict[str, TestClient], store: SystemStore, target_key: str, name: str, path: str, fields: dict
) -> None:
    before = state(store)
    response = post(clients[name], path.format(key_id=target_key), fields)  # with their own valid CSRF token
    assert response.status_code == 403
    assert state(store) == before


@pytest.mark.parametrize("token", [None, "forged-token"], ids=["no-token", "wrong-token"])
@pytest.mark.parametrize(("path", "fields"), ACTIONS, ids=ACTION_IDS)
def test_an_admin_post_without_the_sessions_csrf_token_is_refused(
    admin: TestClient, store: SystemStore, target_key: str, token: str | None, path: str, fields: dict
) -> None:
    before = state(store)
    response = post(admin, path.format(key_id=target_key), fields, token=token)
    assert response.status_code == 403
    assert "CSRF token missing or wrong" in response.text
    assert state(store) == before


def test_an_admin_creates_a_user_who_signs_in_and_disables_them(
    admin: TestClient, new_client: Callable[[], TestClient], store: SystemStore
) -> None:
    response = post(admin, "/admin/users", {"name": "mia", "role": "marketer", "password": "mia's password 1"})
    assert (response.status_code, response.headers["location"]) == (303, "/admin/users")
    listing = admin.get("/admin/users")
    assert listing.status_code == 200
    row = re.search(r"<tr><td>mia</td><td>marketer</td>" + DATE + "<td></td>", listing.text)
    assert row, "mia is not listed as an active marketer with a YYYY-MM-DD HH:MM creation time"

    mia = sign_in(new_client(), "mia", "mia's password 1")
    assert mia.get("/adjustments").status_code == 200
    assert mia.get("/admin/users").status_code == 403  # a marketer, as created

    response = post(admin, "/admin/users/mia/disable")
    assert (response.status_code, response.headers["location"]) == (303, "/admin/users")
    assert Users(store).get("mia") is None
    assert re.search(r"<tr><td>mia</td><td>marketer</td>" + DATE + DATE + "<td></td>",
                     admin.get("/admin/users").text)  # fmt: skip
    assert mia.get("/adjustments").headers["location"] == "/signin"  # her session ended at her next page
    refused = new_client()
    assert refused.post("/signin", data={"name": "mia", "password": "mia's password 1", "csrf": csrf(refused)}
                        ).status_code == 401  # fmt: skip


def test_an_admin_may_not_disable_themselves(admin: TestClient, store: SystemStore) -> None:
    page = admin.get("/admin/users").text
    assert "/admin/users/ada/disable" not in page  # no button for it either
    response = post(admin, "/admin/users/ada/disable")
    assert response.status_code == 422
    assert message(response.text) == "you are signed in as 'ada': another admin must disable you"
    assert Users(store).get("ada") is not None


@pytest.mark.parametrize(
    ("path", "fields", "expected"),
    [
        ("/admin/users", {"name": "bob", "role": "superuser", "password": "long enough 1"}, "unknown role 'superuser'"),
        ("/admin/users", {"name": "bob", "role": "viewer", "password": "short"}, "at least 10 characters, got 5"),
        ("/admin/users", {"name": "ana", "role": "viewer", "password": "long enough 1"}, "user 'ana' exists already"),
        ("/admin/users", {"name": " bob", "role": "viewer", "password": "long enough 1"}, "got ' bob'"),
        ("/admin/users/nobody/disable", {}, "no active user 'nobody'"),
        ("/admin/keys", {"name": "crm", "role": "superuser"}, "unknown role 'superuser'; expected one of"),
        ("/admin/keys", {"name": "", "role": "caller"}, "a key's name is 1 to 64 characters, got ''"),
        ("/admin/keys/ffffffffffff/revoke", {}, "no active key with id 'ffffffffffff'"),
    ],
    ids=["user-role", "short-password", "duplicate-user", "user-name", "unknown-user", "key-role", "key-name",
         "unknown-key"],
)  # fmt: skip
def test_a_refused_change_re_renders_the_page_with_a_422_naming_the_bad_value(
    admin: TestClient, store: SystemStore, path: str, fields: dict, expected: str
) -> None:
    before = state(store)
    response = post(admin, path, fields)
    assert response.status_code == 422
    assert expected in message(response.text)
    assert "password" not in fields or fields["password"] not in response.text  # a typed password never comes back
    assert state(store) == before


def test_a_new_key_is_shown_once_authenticates_and_is_refused_once_revoked(
    admin: TestClient, store: SystemStore
) -> None:
    response = post(admin, "/admin/keys", {"name": "crm-prod", "role": "caller"})
    assert response.status_code == 200  # the page itself, not a redirect that would carry the key
    assert response.headers["cache-control"] == "no-store"
    plain = re.search(r'<code id="new-key">(rk_[^<]+)</code>', response.text)
    assert plain, "the new key is not on the page"
    plain_key = plain.group(1)
    parts = split_key(plain_key)  # rk_<id>_<secret>, parsed as the product parses it (the secret may hold "_")
    assert parts is not None
    secret = parts[1]
    assert len(secret) >= 40 and response.text.count(secret) == 1
    assert "Store it now: it is not shown again." in response.text
    key = check(plain_key, KeyRing(store).hashes())
    assert key is not None and (key.name, key.role) == ("crm-prod", "caller")
    assert secret not in session_payload(admin)

    listing = admin.get("/admin/keys").text
    assert f"<code>{key.key_id}</code>" in listing and "crm-prod" in listing
    assert secret not in listing and "new-key" not in listing  # never again

    revoked = post(admin, f"/admin/keys/{key.key_id}/revoke")
    assert (revoked.status_code, revoked.headers["location"]) == (303, "/admin/keys")
    assert check(plain_key, KeyRing(store).hashes()) is None
    row = re.search(rf"<code>{key.key_id}</code>.*?</tr>", admin.get("/admin/keys").text, re.S)
    assert row and re.search(DATE + DATE + r"<td>\s*</td>", row.group(0)), "not shown revoked, without a button"
    again = post(admin, f"/admin/keys/{key.key_id}/revoke")
    assert again.status_code == 422 and key.key_id in message(again.text)


def test_hostile_names_are_shown_escaped_and_can_still_be_disabled(admin: TestClient, store: SystemStore) -> None:
    assert post(admin, "/admin/users", {"name": HOSTILE, "role": "viewer", "password": "hostile password"}
                ).status_code == 303  # fmt: skip
    assert post(admin, "/admin/keys", {"name": HOSTILE, "role": "caller"}).status_code == 200
    for page in PAGES:
        text = admin.get(page).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;x" in text
        assert "<script>alert" not in text
    # its disable button's URL holds the name percent-encoded ("/" and all) and finds the user
    action = re.search(r'action="(/admin/users/%3Cscript%3E[^"]*/disable)"', admin.get("/admin/users").text)
    assert action, "no disable button for the hostile name"
    assert post(admin, html.unescape(action.group(1))).status_code == 303
    assert Users(store).get(HOSTILE) is None
    assert json.loads(session_payload(admin))["user"] == "ada"
