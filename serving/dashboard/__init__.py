"""The marketers' dashboard: server-rendered pages (Jinja2 on Starlette) mounted on the service at
``/dashboard`` and startable alone (``rekindle dashboard``). :mod:`serving.dashboard.app` builds it,
:mod:`serving.dashboard.auth` signs users in (sessions, roles, CSRF), :mod:`serving.dashboard.data` reads
what the pages show."""
