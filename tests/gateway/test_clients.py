"""The client IP behind trusted proxies, directly."""

from __future__ import annotations

import pytest

from promptpix.gateway.clients import client_ip, parse_networks

PROXIES = parse_networks("10.0.0.0/8, 127.0.0.1, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        (
            "203.0.113.9",
            ["198.51.100.1"],
            PROXIES,
            "203.0.113.9",
        ),  # untrusted peer: the header is ignored
        ("127.0.0.1", [], PROXIES, "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.7"], PROXIES, "198.51.100.7"),
        ("127.0.0.1", ["1.2.3.4, 198.51.100.7, 10.1.1.1"], PROXIES, "198.51.100.7"),
        ("127.0.0.1", ["1.2.3.4", "198.51.100.7"], PROXIES, "198.51.100.7"),  # two headers
        ("127.0.0.1", ["10.1.1.1, 10.2.2.2"], PROXIES, "10.1.1.1"),  # all trusted: the first
        ("127.0.0.1", ["garbage, 198.51.100.7"], PROXIES, "198.51.100.7"),
        ("127.0.0.1", ["198.51.100.7, garbage"], PROXIES, "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.7:4711"], PROXIES, "198.51.100.7"),
        ("127.0.0.1", ["[2001:db8::1]:443"], PROXIES, "2001:db8::1"),
        ("127.0.0.1", ["198.51.100.7"], (), "127.0.0.1"),  # no trusted proxies configured
    ],
)
def test_client_ip(peer: str, xff: list[str], trusted: tuple, expected: str) -> None:
    assert client_ip(peer, xff, trusted) == expected


def test_bad_networks_are_refused() -> None:
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/33")
    assert parse_networks("") == ()
