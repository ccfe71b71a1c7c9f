"""The user store: one SQLite table, passwords hashed with argon2id (argon2-cffi's defaults).

Blocking calls (SQLite, and argon2, which is slow on purpose): the app runs them in a thread."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,       -- E.164, where the codes go
    password_hash TEXT NOT NULL
)
"""
DEMO_USER, DEMO_PASSWORD = "demo", "correct horse battery staple"

_hasher = PasswordHasher()
# Compared against when the username is unknown, so that an unknown user costs as long as a
# wrong password and the answer time doesn't tell which usernames exist.
_UNKNOWN = _hasher.hash("no such user")


@dataclass(frozen=True)
class User:
    username: str
    name: str
    phone: str


class Users:
    def __init__(self, path: Path) -> None:
        self.path = path
        with closing(self._connect()) as db, db:
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path)

    def add(self, username: str, password: str, *, name: str, phone: str) -> User:
        """A new user, or the user of that name with a new password, name and phone."""
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO users (username, name, phone, password_hash) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (username) DO UPDATE SET name = excluded.name, phone = excluded.phone, "
                "password_hash = excluded.password_hash",
                (username, name, phone, _hasher.hash(password)),
            )
        return User(username, name, phone)

    def seed_demo(self, phone: str) -> None:
        """The demo user, unless there is one already (its password may have been changed)."""
        if self.get(DEMO_USER) is None:
            self.add(DEMO_USER, DEMO_PASSWORD, name="Demo User", phone=phone)

    def get(self, username: str) -> User | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT username, name, phone FROM users WHERE username = ?", (username,)).fetchone()
        return None if row is None else User(*row)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user, when the password is theirs."""
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT username, name, phone, password_hash FROM users WHERE username = ?", (username,)
            ).fetchone()
        try:
            _hasher.verify(row[3] if row else _UNKNOWN, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if _hasher.check_needs_rehash(row[3]):  # argon2-cffi's defaults went up since it was hashed
            with closing(self._connect()) as db, db:
                db.execute("UPDATE users SET password_hash = ? WHERE username = ?", (_hasher.hash(password), username))
        return User(row[0], row[1], row[2])
