"""Who is asking: the client's IP address, for rate limits.

It is the peer, unless the peer is one of `PROMPTPIX_TRUSTED_PROXIES` (CIDRs): then it is
the last hop of `X-Forwarded-For` that is not itself trusted, walking from the right, so a
client cannot pick its own address by sending the header (only proxies we trust append to
it, and what a client wrote stays to the left of what they appended).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1` as networks; ValueError naming what does not parse."""
    out: list[Network] = []
    for item in text.replace(" ", ",").split(","):
        if item:
            out.append(ipaddress.ip_network(item, strict=False))
    return tuple(out)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: object, networks: Sequence[Network]) -> bool:
    return any(address in net for net in networks)


def client_ip(peer: str, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The client's address as text; `forwarded_for` holds every `X-Forwarded-For` value."""
    address = _address(peer)
    if address is None or not trusted or not _trusted(address, trusted):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        found = _address(hop)
        if found is None:
            return str(address)  # a hop we cannot read: the last trusted one answers for it
        if not _trusted(found, trusted):
            return str(found)
        address = found
    return str(address)
