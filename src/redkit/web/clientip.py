"""Which client a request comes from: sans-I/O, framework-free, standard library only.

By default the client is the socket peer, the one address nobody on the way can forge.
``X-Forwarded-For`` or ``Forwarded`` (RFC 7239) are read only through :class:`TrustedProxies`:
either networks (the chain is walked right to left, past every address inside them, and the
first address outside is the client) or a hop count (the N-th address from the right, as
werkzeug's ``ProxyFix`` does). The left-most value is never taken on its own word: the client
writes it.

A list entry that is not an address (``unknown``, an obfuscated ``_hidden``, garbage) ends the
walk: what lies left of it came from a hop nobody vouches for, so the nearest address known to
be real (the trusted hop that reported it) stands for the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal, TypeAlias

from redkit.core.errors import InvalidArgumentError

__all__ = [
    "IPAddress",
    "ProxyHeader",
    "TrustedProxies",
    "forwarded_for",
    "group_address",
    "parse_address",
    "resolve_client_ip",
    "x_forwarded_for",
]

#: An address as the standard library's ``ipaddress`` gives it.
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The forwarding header a proxy writes.
ProxyHeader: TypeAlias = Literal["x-forwarded-for", "forwarded"]


def parse_address(text: str | None) -> IPAddress | None:
    """An IP address from a peer or a list entry, or ``None`` when it is not one.

    Accepts ``1.2.3.4``, ``1.2.3.4:8080``, ``2001:db8::1``, ``[2001:db8::1]:8080`` and a
    quoted form of each. IPv4-mapped IPv6 addresses (``::ffff:1.2.3.4``) become IPv4, and a
    zone (``fe80::1%eth0``) is dropped: the same host always gives the same address.
    """
    if not isinstance(text, str):
        return None
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and _is_port(rest[1:]))):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        text, port = text.split(":")
        if not _is_port(port):
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(address.packed)
    return address


def _is_port(text: str) -> bool:
    # RFC 7239 allows an obfuscated port ("_abc") beside the usual digits.
    return (text.isascii() and text.isdigit() and len(text) <= 5) or (
        text.startswith("_") and len(text) > 1
    )


def group_address(address: IPAddress, *, ipv6_prefix: int = 64, ipv4_prefix: int = 32) -> str:
    """The text a limit keys on: the address itself, or its network for a shorter prefix.

    IPv6 addresses are grouped by their /64 by default: one subscriber usually holds a whole
    /64 and could otherwise rotate through addresses to get fresh buckets.
    """
    prefix = ipv6_prefix if address.version == 6 else ipv4_prefix
    if prefix >= address.max_prefixlen:
        return str(address)
    return str(ipaddress.ip_network((address, prefix), strict=False))


def x_forwarded_for(values: Iterable[str]) -> list[str]:
    """The entries of ``X-Forwarded-For`` header values, left to right (several headers join)."""
    return [entry.strip() for value in values for entry in value.split(",")]


def forwarded_for(values: Iterable[str]) -> list[str | None]:
    r"""The ``for=`` node of each ``Forwarded`` element, left to right; ``None`` when missing.

    Quoted strings may hold ``,``, ``;`` and ``\``-escapes. An element with no ``for=``, or
    with several, still counts as a hop, but names no address.
    """
    nodes: list[str | None] = []
    for value in values:
        for element in _split(value, ","):
            found: list[str] = []
            for pair in _split(element, ";"):
                name, eq, raw = pair.partition("=")
                if eq and name.strip().lower() == "for":
                    found.append(_unquote(raw.strip()))
            nodes.append(found[0] if len(found) == 1 else None)
    return nodes


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double-quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    if len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
        return value
    out: list[str] = []
    chars = iter(value[1:-1])
    for char in chars:
        out.append(next(chars, "") if char == "\\" else char)
    return "".join(out)


class TrustedProxies:
    """The proxies in front of the app, whose forwarding headers may be believed.

    Give either ``networks`` (CIDRs or addresses, e.g. ``["10.0.0.0/8", "127.0.0.1"]``) or
    ``hops`` (how many proxies always stand in front of the app), not both.

    Args:
        networks: the proxies' addresses or networks. Headers count only when the socket
            peer is inside one; the chain is then walked right to left past every address
            inside them, and the first address outside is the client (all inside: the
            left-most).
        hops: the number of proxies in front of the app; the client is the ``hops``-th entry
            from the right. A request with fewer entries keeps its socket peer.
        header: ``"x-forwarded-for"`` (the default) or ``"forwarded"`` (RFC 7239): the one
            header your proxies write. The other one is ignored.

    """

    def __init__(
        self,
        networks: Iterable[str | _Network] = (),
        *,
        hops: int = 0,
        header: ProxyHeader = "x-forwarded-for",
    ) -> None:
        if isinstance(networks, str):
            networks = [networks]  # one CIDR, not a sequence of characters
        try:
            self.networks: tuple[_Network, ...] = tuple(
                ipaddress.ip_network(net, strict=False) for net in networks
            )
        except ValueError as exc:
            raise InvalidArgumentError(f"not an IP network: {exc}") from None
        if isinstance(hops, bool) or not isinstance(hops, int) or hops < 0:
            raise InvalidArgumentError(f"hops must be an int >= 0, got {hops!r}")
        if hops and self.networks:
            raise InvalidArgumentError("give trusted networks or a hop count, not both")
        if header not in ("x-forwarded-for", "forwarded"):
            raise InvalidArgumentError(
                f"header must be 'x-forwarded-for' or 'forwarded', got {header!r}"
            )
        self.hops = hops
        self.header: ProxyHeader = header

    def trusts(self, address: IPAddress) -> bool:
        """Whether ``address`` is inside one of the trusted networks."""
        return any(address in network for network in self.networks)

    def entries(self, values: Iterable[str]) -> list[str | None]:
        """The configured header's entries, left to right, from its raw values."""
        if self.header == "forwarded":
            return forwarded_for(values)
        return list(x_forwarded_for(values))

    def resolve(self, peer: str | None, values: Iterable[str]) -> IPAddress | None:
        """The client's address, from the socket ``peer`` and the header's raw ``values``."""
        current = parse_address(peer)
        if current is None:
            return None  # a unix socket, or no peer at all: nothing to go on
        if self.hops:
            chain: Sequence[str | None] = self.entries(values)
            if len(chain) < self.hops:
                return current  # fewer hops than configured: the header is not the proxies'
            chain = chain[len(chain) - self.hops :]
            for entry in reversed(chain):
                address = parse_address(entry)
                if address is None:
                    return current
                current = address
            return current
        if not self.trusts(current):
            return current  # a direct client: whatever headers it sends are its own words
        for entry in reversed(self.entries(values)):
            address = parse_address(entry)
            if address is None:
                return current
            current = address
            if not self.trusts(address):
                return address
        return current


def resolve_client_ip(
    peer: str | None,
    header_values: Iterable[str] = (),
    proxies: TrustedProxies | None = None,
) -> IPAddress | None:
    """The client's address: the socket ``peer``, or through ``proxies`` from their header.

    Args:
        peer: the socket peer's address (ASGI ``scope["client"][0]``, WSGI ``REMOTE_ADDR``).
        header_values: every value of the header ``proxies.header`` names.
        proxies: the trusted proxies; without them headers are ignored.

    Returns:
        The address, or ``None`` when the peer is not an IP address (a unix socket).

    """
    if proxies is None:
        return parse_address(peer)
    return proxies.resolve(peer, header_values)
