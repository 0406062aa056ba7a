"""SSRF guard: refuse loopback, private, link-local and metadata addresses after DNS resolution.

The check runs inside the connection backend, on the address actually dialled, so a redirect
or a DNS answer that changes between check and connect cannot slip a private address through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpcore
import httpx

SETTING_HINT = "set BRIEFCAST_ALLOW_PRIVATE_ADDRESSES=1 to allow sources on loopback or private networks"

# Ranges is_private/is_reserved do not cover but no public feed lives in.
_EXTRA_BLOCKED = [ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15")]


class BlockedAddressError(Exception):
    """A URL resolves to an address the SSRF policy refuses."""


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address is refused, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    checks = (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local (cloud metadata) address"),
        (ip.is_private, "a private address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_reserved, "a reserved address"),
        (any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version), "a shared or benchmark range"),
    )
    return next((why for hit, why in checks if hit), None)


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def parse_networks(cidrs: list[str]) -> Networks:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def check_address(host: str, ip: str, allowed: Networks = ()) -> None:
    address = ipaddress.ip_address(ip)
    if any(address in net for net in allowed if net.version == address.version):
        return
    why = address_problem(address)
    if why:
        raise BlockedAddressError(f"refused {host}: {ip} is {why}; {SETTING_HINT}")


def check_url_now(url: str, allow_private: bool, allowed: Networks = ()) -> None:
    """Early check when a source is added: IP literals and localhost names, without DNS.

    Names are resolved and checked when fetched (GuardedBackend), which is the real guard; doing
    DNS here would make importing a 200-feed OPML file take minutes on a slow resolver.
    """
    if allow_private:
        return
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if not host:
        raise BlockedAddressError(f"refused {url!r}: no host name")
    if host == "localhost" or host.endswith(".localhost"):
        raise BlockedAddressError(f"refused {host}: a loopback name; {SETTING_HINT}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    check_address(host, host, allowed)


def refused_urls(urls: list[str], allow_private: bool, allowed: Networks = ()) -> dict[str, str]:
    """{url: reason} for the URLs `check_url_now` refuses."""
    refused = {}
    for url in urls:
        try:
            check_url_now(url, allow_private, allowed)
        except BlockedAddressError as exc:
            refused[url] = str(exc)
    return refused


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, checks every address, then dials the checked address."""

    def __init__(self, allow_private: bool, allowed: Networks = ()) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private
        self._allowed = allowed

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        last_error: Exception | None = None
        for address in await self._resolve(host, port):  # every one was checked: try each in turn
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise last_error or httpcore.ConnectError(f"no address for {host}")

    async def _resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from exc
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not self._allow_private:
            for address in addresses:
                check_address(host, address, self._allowed)
        return addresses

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise BlockedAddressError("unix sockets are not fetchable")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(allow_private: bool, *, max_connections: int, allowed: Networks = ()) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(retries=0)
    # httpx exposes no network_backend option; swap in a pool that dials through the guard.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        network_backend=GuardedBackend(allow_private, allowed),
    )
    return transport
