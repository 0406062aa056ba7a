"""IPv6 forms that carry an IPv4 address: the carried address meets the same rules as a dialled
IPv4 one. The red team's `2002:a9fe:a9fe::` (6to4 of 169.254.169.254, the cloud metadata
address) was dialled; these go through the fetcher's own guarded dial, a redirect hop included."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from ingest.fetch import Fetcher
from ingest.localserver import LocalServer
from ingest.ssrf import BlockedAddressError, address_problem, check_url_now
from tests import hostile
from tests.conftest import make_settings

REFUSED = {
    # 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD
    "2002:a9fe:a9fe::": "169.254.169.254",
    "2002:7f00:1::": "127.0.0.1",
    "2002:a00:1:1::5": "10.0.0.1",
    "2002:c0a8:101::": "192.168.1.1",
    "2002:6440:1::": "100.64.0.1",  # shared address space (carrier-grade NAT)
    # Teredo 2001:0::/32: the server in bits 32-63, the client inverted in the last 32
    "2001:0:a9fe:a9fe::1": "169.254.169.254",  # server
    "2001:0:808:808:0:0:80ff:fffe": "127.0.0.1",  # client: ~0x7f000001
    # NAT64: the well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48
    "64:ff9b::a9fe:a9fe": "169.254.169.254",
    "64:ff9b::7f00:1": "127.0.0.1",
    "64:ff9b::a00:1": "10.0.0.1",
    "64:ff9b:1::808:808": "64:ff9b:1::/48",
    # IPv4-mapped and IPv4-compatible (deprecated ::a.b.c.d)
    "::ffff:169.254.169.254": "169.254.169.254",
    "::169.254.169.254": "169.254.169.254",
    "::127.0.0.1": "127.0.0.1",
    "::10.0.0.1": "10.0.0.1",
}


@pytest.mark.parametrize("address, carried", REFUSED.items())
def test_an_ipv6_form_carrying_a_refused_ipv4_is_refused_and_named(address, carried):
    why = address_problem(ipaddress.ip_address(address))
    assert why is not None and carried in why, (address, why)


@pytest.mark.parametrize("address", ["2002:808:808::1", "64:ff9b::808:808", "::ffff:8.8.8.8", "2606:4700::1111"])
def test_forms_carrying_a_public_ipv4_stay_fetchable(address):
    """NAT64 is how an IPv6-only host with DNS64 reaches every IPv4 feed: 64:ff9b::8.8.8.8 must
    pass, so the well-known prefix is judged by the address it carries, not refused whole."""
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "::8.8.8.8"])
def test_teredo_and_ipv4_compatible_forms_are_refused_even_when_public(address):
    """No feed lives there: Teredo is a private range to ipaddress, ::a.b.c.d a reserved one."""
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["2002:a9fe:a9fe::", "64:ff9b::7f00:1", "2001:0:a9fe:a9fe::1", "::127.0.0.1"])
def test_adding_such_a_source_is_refused_at_once(address):
    with pytest.raises(BlockedAddressError, match="BRIEFCAST_ALLOW_PRIVATE_ADDRESSES"):
        check_url_now(f"http://[{address}]/feed", allow_private=False)


def fetch(settings, url):
    async def go():
        async with Fetcher(settings) as fetcher:
            return await fetcher.get(url)

    return asyncio.run(go())


@pytest.mark.parametrize("address", ["2002:a9fe:a9fe::", "2002:7f00:1::", "64:ff9b::a9fe:a9fe"])
def test_the_fetcher_refuses_to_dial_them_directly_or_after_a_redirect(tmp_path, sqlite_url, address):
    cfg = make_settings(tmp_path, sqlite_url, allow_private_addresses=False, allowed_networks=["127.0.0.1/32"],
                        total_timeout=3.0)
    direct = fetch(cfg, f"http://[{address}]:9/latest/meta-data/")
    assert direct.error_kind == "blocked", direct.error
    with LocalServer(None) as server:
        server.routes["/hop"] = hostile.redirect_to(f"http://[{address}]/latest/meta-data/")
        hop = fetch(cfg, server.url("/hop"))
    assert hop.error_kind == "blocked" and address in hop.error, hop.error
