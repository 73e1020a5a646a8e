"""``serve --self-signed``: a certificate for this machine's names and addresses.

The certificate and its key live in the cache (``<cache home>/tls/``) and are reused while
they are valid for at least another week and name exactly the hosts wanted now (a new
address, a renamed machine: a new certificate). Made with ``cryptography``: an EC P-256 key,
a certificate valid for a year whose subject alternative names are ``localhost``, the host
name, ``127.0.0.1``, ``::1`` and the machine's other addresses. Its SHA-256 fingerprint is
what a person compares with what the browser shows before accepting it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from audiototext.errors import ConfigError
from audiototext.server.addresses import is_wildcard, machine_addresses, machine_names

__all__ = [
    "SelfSigned",
    "certificate_hosts",
    "ensure_self_signed",
    "fingerprint",
    "self_signed_dir",
]

CERT_FILE = "self-signed-cert.pem"
KEY_FILE = "self-signed-key.pem"
VALID_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True)
class SelfSigned:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the DER certificate, "AB:CD:..."
    hosts: tuple[str, ...]  # the subject alternative names, DNS names then addresses
    reused: bool  # False: made now


def self_signed_dir(cache_root: Path | None = None) -> Path:
    """Where the certificate is kept: ``tls/`` in the cache home (or in ``cache_root``)."""
    from audiototext.models.cache import cache_home

    return (cache_root if cache_root is not None else cache_home()) / "tls"


def certificate_hosts(*bind_hosts: str) -> list[str]:
    """What the certificate names: this machine's names, loopback and other addresses, and
    any specific host the server binds (e.g. ``--host 192.168.1.5`` or a DNS name)."""
    names = machine_names()
    addresses = ["127.0.0.1", "::1", *machine_addresses()]
    for host in bind_hosts:
        host = host.strip().strip("[]")
        if not host or is_wildcard(host):
            continue
        try:
            text = str(ipaddress.ip_address(host))
        except ValueError:
            if host.lower() not in names:
                names.append(host.lower())
            continue
        if text not in addresses:
            addresses.append(text)
    return [*names, *dict.fromkeys(addresses)]


def fingerprint(cert_pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def ensure_self_signed(
    hosts: list[str], folder: Path, *, now: dt.datetime | None = None
) -> SelfSigned:
    """The certificate for ``hosts`` in ``folder``: the stored one if it still fits, else a
    new one (written atomically, the key readable by this user only)."""
    now = now or dt.datetime.now(dt.UTC)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    wanted = _normalised(hosts)
    from filelock import FileLock

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder / "self-signed.lock"):  # two servers starting at once
            stored = _usable(cert_path, key_path, wanted, now)
            if stored is not None:
                return SelfSigned(cert_path, key_path, stored, tuple(hosts), reused=True)
            cert_pem, key_pem = _make(hosts, now)
            _write(key_path, key_pem, 0o600)
            _write(cert_path, cert_pem, 0o644)
    except OSError as exc:
        raise ConfigError(
            f"cannot store the self-signed certificate in {folder} ({exc}); set "
            "AUDIOTOTEXT_HOME to a writable folder or pass --tls-cert/--tls-key"
        ) from exc
    return SelfSigned(cert_path, key_path, fingerprint(cert_pem), tuple(hosts), reused=False)


def _normalised(hosts: list[str]) -> frozenset[str]:
    out = set()
    for h in hosts:
        try:
            out.add(str(ipaddress.ip_address(h)))
        except ValueError:
            out.add(h.lower())
    return frozenset(out)


def _usable(
    cert_path: Path, key_path: Path, wanted: frozenset[str], now: dt.datetime
) -> str | None:
    """The stored certificate's fingerprint when it is valid, names ``wanted`` and its key
    matches; None otherwise (missing, damaged, expiring, other names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert_pem = cert_path.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound, TypeError):
        return None
    named = {str(n).lower() for n in san.get_values_for_type(x509.DNSName)}
    named |= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    if named != wanted:
        return None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc - RENEW_BEFORE:
        return None
    same_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return fingerprint(cert_pem) if same_key else None


def _make(hosts: list[str], now: dt.datetime) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "audiototext serve --self-signed"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # clocks a little apart
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
