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
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052's well-known prefix: the last 32 bits are the IPv4
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local use: the IPv4's place is the operator's
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


class BlockedAddressError(Exception):
    """A URL resolves to an address the SSRF policy refuses."""


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why this address is refused, or None when it is a public unicast address.

    An IPv6 address that carries an IPv4 one (IPv4-mapped, NAT64, 6to4, Teredo's server and
    client, IPv4-compatible) is refused when the carried address would be: 2002:a9fe:a9fe:: is
    169.254.169.254 behind a 6to4 relay. Mapped and NAT64 addresses are translations, judged by
    the IPv4 alone (an IPv6-only host with DNS64 reaches every IPv4 feed through 64:ff9b::/96);
    the others then meet the IPv6 rules as well (ipaddress calls Teredo private, ::/96 reserved).
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return "a local-use NAT64 address (64:ff9b:1::/48), which may translate to any IPv4 address"
        for form, carried in _carried_ipv4(ip):
            why = address_problem(carried)
            if why:
                return f"{why} ({carried}) inside {form} address"
        if ip.ipv4_mapped or ip in _NAT64:
            return None
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


def _carried_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    carried = []
    if ip.ipv4_mapped:
        carried.append(("an IPv4-mapped", ip.ipv4_mapped))
    if ip in _NAT64:
        carried.append(("a NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    if ip.sixtofour:
        carried.append(("a 6to4", ip.sixtofour))
    if ip.teredo:
        server, client = ip.teredo
        carried += [("a Teredo (server)", server), ("a Teredo (client)", client)]
    if ip in _IPV4_COMPATIBLE and int(ip) >> 24:  # from ::1.0.0.0: below are ::, ::1 and their like
        carried.append(("an IPv4-compatible", ipaddress.IPv4Address(int(ip))))
    return carried


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
