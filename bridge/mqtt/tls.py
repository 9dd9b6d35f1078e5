"""TLS towards the broker: the `ssl.SSLContext` the client uses, and checks of its files.

`tls_context` builds the context from `TlsSettings`; it never prompts for a key
passphrase (a daemon has no terminal), so an encrypted key is an error, as is a file
holding no certificate or a certificate and key that do not belong together. The
`*_problem` functions make the same loads on a throw-away context and say what is
wrong with one `mqtt.tls` key, for check-config and reload.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from bridge.errors import BridgeError
from bridge.mqtt.settings import TlsSettings


class TlsMaterialError(BridgeError):
    """A TLS file (`key` names its `mqtt.tls` key) cannot be used."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"mqtt.tls.{key}: {message}")


class _PassphraseAsked(Exception):
    pass


def _no_passphrase() -> str:
    raise _PassphraseAsked


def _attempt(load: Callable[[], object]) -> ssl.SSLError | _PassphraseAsked | OSError | None:
    try:
        load()
    except (ssl.SSLError, _PassphraseAsked) as exc:
        return exc
    except OSError as exc:  # unreadable file
        return exc
    return None


def ca_problem(ca_file: str) -> str | None:
    """Why `ca_file` cannot serve as the CA certificates, or None."""
    return _certificate_problem(ca_file, "CA certificate")


def cert_problem(cert_file: str) -> str | None:
    """Why `cert_file` cannot serve as the client certificate, or None."""
    return _certificate_problem(cert_file, "client certificate")


def _certificate_problem(path: str, role: str) -> str | None:
    error = _attempt(lambda: ssl.create_default_context().load_verify_locations(path))
    if error is None:
        return None
    if isinstance(error, ssl.SSLError):
        return f"file {path} holds no PEM certificate (expected the {role})"
    return f"file {path} cannot be read ({error})"


def key_problem(cert_file: str, key_file: str) -> str | None:
    """Why `key_file` (or, when empty, the key inside `cert_file`) cannot be used, or None."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    error = _attempt(
        lambda: context.load_cert_chain(cert_file, key_file or None, password=_no_passphrase)
    )
    where = f"file {key_file}" if key_file else f"cert_file {cert_file} (no key_file set)"
    if error is None:
        return None
    if isinstance(error, _PassphraseAsked):
        return (
            f"the private key in {where} is protected by a passphrase, which the bridge "
            "cannot be given; store it decrypted (openssl pkey -in KEY -out NEW) with mode 600"
        )
    if isinstance(error, ssl.SSLError) and error.reason == "KEY_VALUES_MISMATCH":
        return f"the private key in {where} does not belong to the certificate {cert_file}"
    if isinstance(error, ssl.SSLError):
        return f"{where} holds no usable PEM private key"
    return f"{where} cannot be read ({error})"


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """The client context; raises TlsMaterialError naming the key of a bad file."""
    checks: list[tuple[str, str | None]] = []
    if tls.ca_file:
        checks.append(("ca_file", ca_problem(tls.ca_file)))
    if tls.cert_file:
        checks.append(("cert_file", cert_problem(tls.cert_file)))
        checks.append(("key_file", key_problem(tls.cert_file, tls.key_file)))
    for key, problem in checks:
        if problem is not None:
            raise TlsMaterialError(key, problem)
    context = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file or None, password=_no_passphrase)
    return context
