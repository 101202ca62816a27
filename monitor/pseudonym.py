"""Patient identifiers → pseudonyms, with a keyed hash (HMAC-SHA-256) and rotatable keys.

The key file holds one key per line, newest first::

    # id   secret (hex, at least 32 bytes)                                  not after (optional)
    k2026b 9f0c…e1
    k2026a 41d2…7a                                                        2027-01-31

The first key makes new pseudonyms: ``<id>-<first 32 hex digits of HMAC-SHA-256(secret,
identifier)>``. The others are kept for an overlap period while the edges change keys:
a value that already is a pseudonym of a listed key (and, where the line gives a date, not
after it) passes unchanged, so a gateway still on the old key and one on the new key both
reach the store as pseudonyms, never as raw identifiers. To rotate: put the new key first,
keep the old one with a date, roll the file out to gateways and daemon, and delete the old
line after that date.

The same identifier gives the same pseudonym under the same key, so a patient's records
link up; under a new key it gives a new pseudonym, which is what rotation is for. Without
the key, a pseudonym cannot be turned back into the identifier or recomputed from a guess.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import ConfigError

_ID = re.compile(r"[A-Za-z0-9]{1,16}")
_PSEUDONYM = re.compile(r"([A-Za-z0-9]{1,16})-[0-9a-f]{32}")
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    secret: bytes
    not_after: dt.date | None


class Pseudonymizer:
    """Turns identifiers into pseudonyms with the key file's first key."""

    def __init__(self, keys: list[Key], today: Callable[[], dt.date] = dt.date.today) -> None:
        if not keys:
            raise ConfigError("pseudonym key file: no key")
        self.keys = keys
        self._today = today

    @classmethod
    def from_file(cls, path: str | Path) -> Pseudonymizer:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"pseudonym key file {path}: {exc.strerror or exc}") from exc
        keys = []
        for n, line in enumerate(text.splitlines(), 1):
            parts = line.split("#", 1)[0].split()
            if not parts:
                continue
            where = f"pseudonym key file {path}, line {n}"  # never the secret itself
            if len(parts) not in (2, 3) or not _ID.fullmatch(parts[0]):
                raise ConfigError(f"{where}: expected 'ID SECRET-HEX [NOT-AFTER-DATE]'")
            try:
                secret = bytes.fromhex(parts[1])
            except ValueError:
                raise ConfigError(f"{where}: the secret is not hexadecimal") from None
            if len(secret) < MIN_SECRET_BYTES:
                raise ConfigError(f"{where}: the secret has {len(secret)} bytes; "
                                  f"at least {MIN_SECRET_BYTES} (openssl rand -hex 32)")
            try:
                until = dt.date.fromisoformat(parts[2]) if len(parts) == 3 else None
            except ValueError:
                raise ConfigError(f"{where}: {parts[2]!r} is not a date (YYYY-MM-DD)") from None
            keys.append(Key(parts[0], secret, until))
        if len({k.id for k in keys}) != len(keys):
            raise ConfigError(f"pseudonym key file {path}: a key id appears twice")
        return cls(keys)

    @property
    def current(self) -> Key:
        return self.keys[0]

    def is_pseudonym(self, value: str) -> bool:
        """Made with a key this file still accepts."""
        m = _PSEUDONYM.fullmatch(value)
        if m is None:
            return False
        today = self._today()
        return any(k.id == m.group(1) and (k.not_after is None or today <= k.not_after)
                   for k in self.keys)

    def __call__(self, identifier: str) -> str:
        """The pseudonym of ``identifier`` (an accepted pseudonym passes unchanged)."""
        if not identifier or self.is_pseudonym(identifier):
            return identifier
        key = self.current
        digest = hmac.new(key.secret, identifier.encode(), hashlib.sha256).hexdigest()
        return f"{key.id}-{digest[:32]}"
