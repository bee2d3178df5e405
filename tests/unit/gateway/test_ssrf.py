"""The SSRF policy: which addresses a webhook may be sent to, in every spelling of an address."""

from __future__ import annotations

import pytest

from gateway.webhooks.ssrf import UnsafeTarget, check_target, is_public

# Addresses carrying 169.254.169.254 (cloud metadata) or 10.0.0.1 inside IPv6, and IPv6 ranges that
# Python's ipaddress calls global on 3.11.
PRIVATE = [
    "127.0.0.1", "10.0.0.1", "169.254.169.254", "100.64.0.1", "192.0.0.8", "192.88.99.1", "198.18.0.1",
    "224.0.0.1", "255.255.255.255", "0.0.0.0",
    "::1", "::", "fe80::1", "fc00::1", "fd12::1", "fec0::1", "ff02::1",
    "::ffff:169.254.169.254",        # IPv4-mapped
    "::ffff:0:a9fe:a9fe",            # SIIT (::ffff:0:0:0/96) of 169.254.169.254
    "::a00:1",                       # IPv4-compatible ::10.0.0.1
    "64:ff9b::a9fe:a9fe",            # NAT64 well-known prefix of 169.254.169.254
    "64:ff9b:1::a00:1",              # NAT64 local-use prefix
    "2002:a9fe:a9fe::1",             # 6to4 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    "2001:db8::1", "2001:2::1", "3fff::1",
]
PUBLIC = ["93.184.215.14", "8.8.8.8", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "2a00:1450:4001:82a::200e",
          "::ffff:93.184.215.14", "64:ff9b::5db8:d70e", "2002:5db8:d70e::1"]


@pytest.mark.parametrize("address", PRIVATE)
def test_private_special_and_ipv4_carrying_addresses_are_refused(address: str) -> None:
    assert not is_public(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert is_public(address)


@pytest.mark.parametrize("url", [
    "https://2130706433/", "https://0177.0.0.1/", "https://0x7f.1/", "https://127.1/", "https://0x7f000001/",
    "https://[::ffff:127.0.0.1]/", "https://[64:ff9b::a9fe:a9fe]/latest", "https://[fec0::1]/",
    "https://[2002:a00:1::1]/", "https://[::ffff:0:a00:1]/",
])
async def test_every_spelling_of_a_private_address_is_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        await check_target(url, allow_private=False)


async def test_numeric_shorthand_of_a_public_address_is_refused_too() -> None:
    # The HTTP client may parse 1572394766 differently from the guard: only the dotted form is accepted.
    with pytest.raises(UnsafeTarget, match=r"93\.184\.215\.14"):
        await check_target("https://1572394766/", allow_private=False)
    await check_target("https://93.184.215.14/", allow_private=False)
