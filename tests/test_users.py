"""The dashboard's users: scrypt-hashed passwords, roles in order, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import sqlite_url
from system_db.store import SystemStore
from system_db.users import User, UserError, Users, hash_password, password_matches


def test_passwords_are_salted_scrypt_hashes_checked_in_constant_form(tmp_path: Path) -> None:
    users = Users(SystemStore(sqlite_url(tmp_path / "s.db")))
    users.create("ana", "marketer", "correct horse battery")
    users.create("bob", "viewer", "correct horse battery")
    with users.store.engine.connect() as conn:
        stored = [r[0] for r in conn.exec_driver_sql("SELECT password FROM dashboard_users ORDER BY name")]
    assert all(s.startswith("scrypt$16384$8$1$") and "correct" not in s for s in stored)
    assert stored[0] != stored[1]  # the same password, another salt
    assert users.check("ana", "correct horse battery") == User("ana", "marketer")
    assert users.check("ana", "correct horse batterY") is None
    assert users.check("nobody", "correct horse battery") is None
    assert not password_matches("x", "md5$abc") and not password_matches("x", "garbage")
    assert password_matches("pw", hash_password("pw")) and not password_matches("pw", hash_password("pW"))
    users.disable("ana")
    assert users.check("ana", "correct horse battery") is None and users.get("ana") is None
    with pytest.raises(UserError, match="no active user 'ana'"):
        users.disable("ana")


def test_bad_users_are_refused_naming_what_was_expected(tmp_path: Path) -> None:
    users = Users(SystemStore(sqlite_url(tmp_path / "s.db")))
    with pytest.raises(UserError, match=r"unknown role 'boss'; expected one of \['viewer', 'marketer', 'admin'\]"):
        users.create("ana", "boss", "correct horse battery")
    with pytest.raises(UserError, match="at least 10 characters, got 5"):
        users.create("ana", "viewer", "short")
    with pytest.raises(UserError, match="1 to 64 printable characters"):
        users.create(" ana", "viewer", "correct horse battery")
    users.create("ana", "viewer", "correct horse battery")
    with pytest.raises(UserError, match="user 'ana' exists already"):
        users.create("ana", "admin", "correct horse battery")
    assert [u["role"] for u in users.list()] == ["viewer"]


def test_roles_are_ordered() -> None:
    viewer, marketer, admin = User("v", "viewer"), User("m", "marketer"), User("a", "admin")
    assert viewer.may("viewer") and not viewer.may("marketer")
    assert marketer.may("marketer") and not marketer.may("admin")
    assert admin.may("viewer") and admin.may("marketer") and admin.may("admin")
