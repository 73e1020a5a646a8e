"""This machine's names and addresses: what a self-signed certificate covers, and the URLs
printed at start (one a person can open: never ``0.0.0.0``)."""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["is_wildcard", "machine_addresses", "machine_names", "openable_hosts", "url_host"]

_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


def is_wildcard(host: str) -> bool:
    """True for a bind address meaning "every interface" (not one a browser can open)."""
    return host.strip() in _WILDCARDS


def machine_addresses() -> list[str]:
    """The machine's non-loopback IPv4 and IPv6 addresses (link-local ones left out: they
    need a zone and are of no use in a URL or a certificate), in interface order."""
    found: list[str] = []
    try:
        import psutil

        interfaces = psutil.net_if_addrs()
    except Exception:  # psutil missing or the OS refusing: hostname lookup only
        interfaces = {}
    candidates: list[str] = []
    for addrs in interfaces.values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                candidates.append(str(a.address).split("%", 1)[0])
    if not candidates:
        try:
            candidates = [
                str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)
            ]
        except OSError:
            candidates = []
    for text in candidates:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            continue
        if str(ip) not in found:
            found.append(str(ip))
    return found


def machine_names() -> list[str]:
    """DNS names of this machine: ``localhost``, the host name and its fully qualified name."""
    names = ["localhost"]
    for name in (socket.gethostname(), _fqdn()):
        name = name.strip().rstrip(".").lower()
        if name and name not in names and _is_dns_name(name):
            names.append(name)
    return names


def _fqdn() -> str:
    try:
        return socket.getfqdn()
    except OSError:
        return ""


def _is_dns_name(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return False
    except ValueError:
        pass
    return all(part and len(part) < 64 for part in name.split(".")) and all(
        c.isalnum() or c in "-." for c in name
    )


def url_host(host: str) -> str:
    """``host`` as it stands in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def openable_hosts(bind_host: str) -> list[str]:
    """Hosts a person can open for a listener bound to ``bind_host``: the host itself, or
    for a wildcard (``0.0.0.0``, ``::``) localhost and the machine's addresses."""
    if not is_wildcard(bind_host):
        return [bind_host]
    hosts = ["localhost"]
    ipv6 = ":" in bind_host
    for address in machine_addresses():
        if ":" in address and not ipv6:
            continue  # a 0.0.0.0 listener does not answer on IPv6
        hosts.append(address)
    return hosts
