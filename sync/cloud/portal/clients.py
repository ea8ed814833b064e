"""Who is asking: the client address of a request, behind trusted reverse proxies only.

``X-Forwarded-For`` is honoured only when the connection comes from an address listed in
``portal.trusted_proxies``; then the header is read from its right end (the address the
nearest proxy saw) leftwards past every trusted proxy, and the first other address is the
client. A header from anyone else, or one that is not a list of addresses, is ignored: a
client cannot pick the bucket it is counted in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(listed: Iterable[str]) -> tuple[Network, ...]:
    """The ``portal.trusted_proxies`` entries as networks (checked by the settings)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in listed)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str | None, forwarded_for: str | None,
                   proxies: tuple[Network, ...]) -> str:
    """The client's address: ``peer`` unless it is a trusted proxy that forwarded a valid
    ``X-Forwarded-For`` (then the right-most address in it that is not a trusted proxy)."""
    peer = peer or "unknown"
    if not forwarded_for or not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    try:
        addresses = [str(ipaddress.ip_address(hop)) for hop in hops]
    except ValueError:
        return peer  # not a list of addresses: nothing in it is believed
    for address in reversed(addresses):
        if not _trusted(address, proxies):
            return address
    return addresses[0] if addresses else peer


def client_of(request: Any) -> str:
    """The client address of a Starlette request (see :func:`client_address`)."""
    settings = request.app.state.settings
    proxies = networks(settings.portal.trusted_proxies)
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"), proxies)
