"""Accounts, sessions and CSRF tokens for the station page, in SQLite.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile).
A session is a random token in an HttpOnly, SameSite=Strict cookie; only its SHA-256 is
stored, so a copy of the database does not sign anyone in. Sessions end after
``idle_s`` without a request and ``max_s`` after sign-in, whichever comes first. Each
session has its own CSRF token, which every state-changing request must echo in the
``X-CSRF-Token`` header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from monitor.errors import WardwatchError
from monitor.sqlitedb import connect

ROLES = ("viewer", "nurse", "admin")  # each may do what the ones before it may
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, hash TEXT NOT NULL, role TEXT NOT NULL, created REAL NOT NULL,
    wards TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL,
    created REAL NOT NULL, last_seen REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    role: str
    csrf: str
    wards: frozenset[str] = frozenset()  # the wards this user sees and acts on; empty: all

    def may(self, role: str) -> bool:
        """Whether this session's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, ward: str) -> bool:
        """Whether this user may see (and, with the role, act on) ``ward``."""
        return not self.wards or ward in self.wards


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Users and their sessions (``station.db`` in the store directory)."""

    def __init__(self, path: str | Path, *, idle_s: float = 1800.0,
                 max_s: float = 12 * 3600.0) -> None:
        self.path = str(path)
        self.idle_s = idle_s
        self.max_s = max_s
        self._hasher = PasswordHasher()
        # one connection, used from the event loop and from the thread that runs the
        # (slow, deliberately) password checks: every use holds this lock
        self._lock = threading.RLock()
        self._db = connect(self.path, what="station accounts", schema=_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(users)")}
        if "wards" not in columns:  # a store written before accounts had wards
            with self._db:
                self._db.execute("ALTER TABLE users ADD COLUMN wards TEXT NOT NULL DEFAULT ''")
        # verifying against this when the user does not exist takes as long as a real
        # check, so response times do not tell which usernames exist. Made by the first
        # check, whoever it is for, not at start: a hash is ~0.17 s of start-up here.
        self._dummy = ""

    # -- users -----------------------------------------------------------------------
    def add_user(self, username: str, password: str, role: str, *,
                 replace: bool = False, wards: Sequence[str] = ()) -> None:
        """Create a user (``replace``: or reset its password, role and wards). ``wards``
        limits what the user sees and acts on; none: every ward."""
        if role not in ROLES:
            raise WardwatchError(f"role must be one of {', '.join(ROLES)}")
        if not username or len(username) > 64 or not username.isprintable():
            raise WardwatchError("username: 1-64 printable characters")
        if len(password) < 10:
            raise WardwatchError("password: at least 10 characters")
        if any(not w or "," in w or not w.isprintable() for w in wards):
            raise WardwatchError("wards: printable names without commas")
        with self._lock, self._db:
            verb = "INSERT OR REPLACE" if replace else "INSERT"
            try:
                self._db.execute(
                    f"{verb} INTO users (username, hash, role, created, wards)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (username, self._hasher.hash(password), role, time.time(),
                     ",".join(sorted(set(wards)))))
            except sqlite3.IntegrityError as exc:
                raise WardwatchError(f"user {username!r} exists") from exc

    def users(self) -> list[tuple[str, str, str]]:
        """(username, role, wards: comma-separated, empty for all)."""
        with self._lock:
            return list(self._db.execute(
                "SELECT username, role, wards FROM users ORDER BY username"))

    def check_password(self, username: str, password: str) -> str | None:
        """The user's role if the password is right, else None."""
        if not self._dummy:  # outside the lock: the event loop's session look-ups take it
            self._dummy = self._hasher.hash(secrets.token_hex(16))  # (a race: two, both fine)
        with self._lock:
            row = self._db.execute("SELECT hash, role FROM users WHERE username = ?",
                                   (username,)).fetchone()
        stored, role = row if row else (self._dummy, None)
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if role is not None and self._hasher.check_needs_rehash(stored):
            with self._lock, self._db:
                self._db.execute("UPDATE users SET hash = ? WHERE username = ?",
                                 (self._hasher.hash(password), username))
        return str(role) if role is not None else None

    # -- sessions --------------------------------------------------------------------
    def open_session(self, username: str, now: float | None = None) -> str:
        """A new session token for a signed-in user (the cookie's value)."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        with self._lock, self._db:
            self._db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                             (_sha(token), username, secrets.token_urlsafe(32), now, now))
            self._db.execute("DELETE FROM sessions WHERE created < ? OR last_seen < ?",
                             (now - self.max_s, now - self.idle_s))
        return token

    def session(self, token: str | None, now: float | None = None) -> Session | None:
        """The live session of ``token`` (and it is kept alive), or None."""
        if not token:
            return None
        now = time.time() if now is None else now
        with self._lock:
            row = self._db.execute(
                "SELECT s.username, u.role, s.csrf, s.created, s.last_seen, u.wards"
                " FROM sessions s"
                " JOIN users u ON u.username = s.username WHERE s.token_sha256 = ?",
                (_sha(token),)).fetchone()
        if row is None:
            return None
        username, role, csrf, created, last_seen, wards = row
        if now - created > self.max_s or now - last_seen > self.idle_s:
            self.close_session(token)
            return None
        if now - last_seen > 10:  # keep-alive, at most every 10 s per session
            with self._lock, self._db:
                self._db.execute("UPDATE sessions SET last_seen = ? WHERE token_sha256 = ?",
                                 (now, _sha(token)))
        return Session(username, role, csrf, frozenset(w for w in wards.split(",") if w))

    def close_session(self, token: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_sha(token),))

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(session.csrf, presented)

    def close(self) -> None:
        with self._lock:
            self._db.close()
