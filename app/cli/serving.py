"""The serving commands: serve, keys, overrides, users, dashboard. Thin: parse, call serving/ and system_db/, print."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from app.cli.root import Context, console, friendly_errors


@click.command("serve")
@click.option("--host", help="Interface to listen on (default serving.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default serving.port, 3000).")
@click.option("--workers", type=click.IntRange(min=1), help="API worker processes (default serving.workers).")
@click.option("--openapi", is_flag=True, help="Print the API's OpenAPI document (docs/openapi.json) and exit.")
@click.pass_obj
@friendly_errors
def serve(obj: Context, host: str | None, port: int | None, workers: int | None, openapi: bool) -> None:
    """Start the recommendation API (BentoML): POST /v1/recommendations and the rest of docs/serving.md.

    Serves the champion model, or, when none is trusted, the challenger with the fallback rule its
    training registered. Needs the feature store materialised and an API key (`rekindle keys create`)."""
    if openapi:
        from serving.service import app

        click.echo(json.dumps(app.openapi(), indent=1))
        return
    from serving.engine import preflight

    cfg = obj.config()
    said = preflight(cfg)
    host = host or cfg.serving.host
    port = port or cfg.serving.port
    env = {
        **os.environ,
        "REKINDLE_HOME": str(cfg.home),
        "REKINDLE_CONFIG": str(cfg.config_dir),
        "REKINDLE_DB_URL": cfg.db_url,
        "REKINDLE_WORKERS": str(workers or cfg.serving.workers),
        "REKINDLE_ACCESS_LOG": "1" if cfg.serving.access_log else "0",
        "REKINDLE_TRACE_DECISIONS": "1" if cfg.serving.trace_decisions else "0",
        "BENTOML_HOME": str(cfg.path("bentoml")),
        "BENTOML_DO_NOT_TRACK": "True",
        # one OpenMP thread per worker: the workers already fill the cores, and LightGBM's threads on a few
        # rows wait for each other (a 15-row prediction took 3.3 ms with two threads, 0.24 ms with one)
        "OMP_NUM_THREADS": os.environ.get("REKINDLE_SERVE_THREADS", "1"),
    }
    console.print(f"{said}\nserving on http://{host}:{port} (stop with Ctrl-C or SIGTERM to this process)")
    sys.stdout.flush()
    args = [sys.executable, "-m", "bentoml", "serve", "serving.service:Rekindle", "--host", host, "--port", str(port)]
    os.execve(sys.executable, args, env)  # this process becomes the server: its pid stops it


@click.group("keys")
def keys() -> None:
    """API keys of the service (stored hashed; the plain key is shown once)."""


@keys.command("create")
@click.option("--name", required=True, help="Who the key is for (e.g. crm-prod).")
@click.option("--role", type=click.Choice(["caller", "admin"]), default="caller", show_default=True)
@click.pass_obj
@friendly_errors
def keys_create(obj: Context, name: str, role: str) -> None:
    """Create a key; prints it once."""
    from system_db.access import KeyRing
    from system_db.store import SystemStore

    key, plain = KeyRing(SystemStore(obj.config().system_db_url)).create(name, role)
    console.print(f"created key {key.key_id} ({key.role}) for {key.name}; store it now, it is not shown again:")
    click.echo(plain)


@keys.command("list")
@click.pass_obj
@friendly_errors
def keys_list(obj: Context) -> None:
    """Every key (never the secrets)."""
    from system_db.access import KeyRing
    from system_db.store import SystemStore

    for k in KeyRing(SystemStore(obj.config().system_db_url)).list():
        state = f"revoked {k['revoked_at']:%Y-%m-%d %H:%M}" if k["revoked_at"] else "active"
        console.print(
            f"{k['key_id']}  {k['role']:6s}  {k['name']:20s}  created {k['created_at']:%Y-%m-%d %H:%M}  {state}"
        )


@keys.command("revoke")
@click.argument("key_id")
@click.pass_obj
@friendly_errors
def keys_revoke(obj: Context, key_id: str) -> None:
    """Revoke a key (running services refuse it within seconds)."""
    from system_db.access import KeyRing
    from system_db.store import SystemStore

    KeyRing(SystemStore(obj.config().system_db_url)).revoke(key_id)
    console.print(f"revoked {key_id}")


@click.group("overrides")
def overrides() -> None:
    """The marketers' overrides of serving.policy, in force in running services within seconds."""


@overrides.command("set")
@click.argument("field")
@click.argument("value")
@click.option("--who", default=lambda: os.environ.get("USER", "cli"), help="Recorded in the audit trail.")
@click.pass_obj
@friendly_errors
def overrides_set(obj: Context, field: str, value: str, who: str) -> None:
    """Set FIELD to VALUE (JSON: 0.1, true, ["cashback"], {"seg": "cashback@10000"}; null clears it)."""
    from system_db.overrides import Overrides
    from system_db.store import SystemStore

    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value  # a bare string
    cfg = obj.config()
    settings = Overrides(SystemStore(cfg.system_db_url)).set(field, parsed, who=who, base=cfg.serving.policy)
    console.print(f"{field} = {json.dumps(getattr(settings, field))} (audited as {who})")


@overrides.command("show")
@click.pass_obj
@friendly_errors
def overrides_show(obj: Context) -> None:
    """The overrides in force and the audit trail."""
    from system_db.overrides import Overrides
    from system_db.store import SystemStore

    o = Overrides(SystemStore(obj.config().system_db_url))
    console.print(o.read())
    console.print(o.history().to_string(index=False))


@click.group("campaign")
def campaign() -> None:
    """A logged batch's campaign for an event system: send it to a webhook, resume a send."""


@campaign.command("send")
@click.argument("name")
@click.option("--webhook", "url", metavar="URL", required=True, help="The event system's webhook.")
@click.option(
    "--chunk-size", type=click.IntRange(min=1), default=1000, show_default=True,
    help="Offers per POST (a resumed send keeps the size it started with).",
)  # fmt: skip
@click.pass_obj
@friendly_errors
def campaign_send(obj: Context, name: str, url: str, chunk_size: int) -> None:
    """POST the offers of batch NAME (e.g. batch-20261005T100000, as `rekindle batch` printed it) to a webhook,
    one chunk per request, skipping the chunks it already acknowledged: resumes an interrupted send."""
    from app.cli.models import print_delivery
    from app.progress import RichProgress
    from core.errors import RekindleError
    from serving.webhook import send_campaign
    from system_db.decision_log import DecisionLog
    from system_db.deliveries import Deliveries
    from system_db.store import SystemStore

    store = SystemStore(obj.config().system_db_url)
    log = DecisionLog(store)
    if not log.count_batch(name):
        raise RekindleError(f"the decision log holds no batch {name!r}: expected a name like batch-20261005T100000")
    with RichProgress(console) as progress:
        report = send_campaign(name, log.campaign_offers(name), url, Deliveries(store), chunk_size=chunk_size,
                               progress=progress)  # fmt: skip
    print_delivery(report)


@click.group("users")
def users() -> None:
    """The dashboard's users (viewer, marketer, admin); passwords stored as scrypt hashes."""


@users.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "marketer", "admin"]), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
@click.pass_obj
@friendly_errors
def users_create(obj: Context, name: str, role: str, password_stdin: bool) -> None:
    """Create user NAME; asks for the password (at least 10 characters) unless --password-stdin."""
    from system_db.store import SystemStore
    from system_db.users import Users

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    user = Users(SystemStore(obj.config().system_db_url)).create(name, role, password)
    console.print(f"created {user.role} {user.name}")


@users.command("list")
@click.pass_obj
@friendly_errors
def users_list(obj: Context) -> None:
    """Every user (never the passwords)."""
    from system_db.store import SystemStore
    from system_db.users import Users

    for u in Users(SystemStore(obj.config().system_db_url)).list():
        state = f"disabled {u['disabled_at']:%Y-%m-%d %H:%M}" if u["disabled_at"] else "active"
        console.print(f"{u['name']:24s} {u['role']:9s} created {u['created_at']:%Y-%m-%d %H:%M}  {state}")


@users.command("disable")
@click.argument("name")
@click.pass_obj
@friendly_errors
def users_disable(obj: Context, name: str) -> None:
    """Disable user NAME (signed-in sessions end at their next page)."""
    from system_db.store import SystemStore
    from system_db.users import Users

    Users(SystemStore(obj.config().system_db_url)).disable(name)
    console.print(f"disabled {name}")


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8090, show_default=True)
@click.pass_obj
@friendly_errors
def dashboard(obj: Context, host: str, port: int) -> None:
    """Start the marketers' dashboard alone (the service also serves it at /dashboard). Sign in with a user
    made by `rekindle users create`."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Mount, Route

    from serving.dashboard.app import Dashboard

    cfg = obj.config()
    root = Route("/", lambda request: RedirectResponse("/dashboard/"))
    app = Starlette(routes=[root, Mount("/dashboard", app=Dashboard(lambda: cfg))])
    console.print(f"dashboard on http://{host}:{port}/dashboard/ (stop with Ctrl-C or SIGTERM to this process)")
    sys.stdout.flush()
    uvicorn.run(app, host=host, port=port, log_level="warning")


COMMANDS = (serve, keys, overrides, campaign, users, dashboard)
