"""Broker URLs (``mqtt://``, ``mqtts://``) into aiomqtt client arguments or paho clients."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from monitor.errors import ConfigError

# The longest wait between attempts to reach a broker that is down. Once it is back,
# monitoring resumes (and waiting alarm events go out) within this: a few seconds, not
# the half-minute a generic client would wait. An attempt at a local broker costs a
# refused connection, nothing more.
RECONNECT_MAX_S = 5  # seconds (paho takes whole seconds)


def redacted(url: str) -> str:
    """A broker URL fit for logs and screens: the password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def broker_urls(url: str) -> list[str]:
    """``mqtt.url`` as a list: a cluster worker may name several nodes, comma-separated,
    and its connections go to the next one when one fails."""
    return [u.strip() for u in url.split(",") if u.strip()]


def all_client_args(url: str, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`client_args` for each node of a comma-separated ``url``."""
    return [client_args(u, **kwargs) for u in broker_urls(url)]


def client_args(url: str, *, identifier: str, clean_session: bool | None = None,
                ca_file: str = "", cert_file: str = "", key_file: str = "",
                keepalive: int = 30) -> dict[str, Any]:
    """aiomqtt.Client keyword arguments for a broker URL.

    ``mqtts://`` turns on TLS (system CAs, or ``ca_file``); user and password may be in
    the URL's userinfo; ``cert_file`` and ``key_file`` present a client certificate (a
    broker with ``use_identity_as_username`` takes the certificate's CN as the user).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ConfigError(f"broker URL must look like mqtt://host:port, got {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    args: dict[str, Any] = {
        "hostname": parts.hostname,
        "port": parts.port or (8883 if tls else 1883),
        "identifier": identifier,
        "keepalive": keepalive,
    }
    if clean_session is not None:
        args["clean_session"] = clean_session
    if parts.username:
        args["username"] = unquote(parts.username)
        args["password"] = unquote(parts.password or "")
    if (cert_file or key_file) and not tls:
        raise ConfigError("mqtt.cert_file / key_file need an mqtts:// broker URL")
    if tls:
        ctx = ssl.create_default_context(cafile=ca_file or None)
        if cert_file:
            try:
                ctx.load_cert_chain(cert_file, key_file or None)
            except (OSError, ssl.SSLError) as exc:  # the message names no key material
                raise ConfigError(f"mqtt.cert_file {cert_file!r} / key_file {key_file!r}: "
                                  f"{exc.strerror or exc}") from exc
        args["tls_context"] = ctx
    return args


def paho_client(url: str, *, client_id: str, clean_session: bool, ca_file: str = "",
                cert_file: str = "", key_file: str = "",
                manual_ack: bool = False) -> tuple[paho.Client, str, int]:
    """A paho client (not connected) for a broker URL, with its host and port."""
    args = client_args(url, identifier=client_id, ca_file=ca_file, cert_file=cert_file,
                       key_file=key_file)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean_session, manual_ack=manual_ack)
    if "username" in args:
        client.username_pw_set(args["username"], args["password"])
    if "tls_context" in args:
        client.tls_set_context(args["tls_context"])
    return client, str(args["hostname"]), int(args["port"])
