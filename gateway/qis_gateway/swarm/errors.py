"""Exceptions of the swarm package.

    SwarmError                      base of everything raised on purpose here
    ├── WireError                   a datagram is malformed / oversized / wrongly typed (peer's fault:
    │                               the node counts and drops it, never raises it to the driver)
    ├── SwarmUsageError             the caller misused the API (bad address length, oversized value, a value
    │                               the validator refused): a local fault, retrying cannot help
    ├── SwarmUnavailable            no peer answered (a put stored nowhere else, a lookup reached nobody):
    │                               queue and retry later
    ├── SwarmStopped                the swarm is not running (not started yet, or stopped mid-operation)
    └── (config.ConfigError, identity.IdentityError are ValueErrors raised at construction)
"""

from __future__ import annotations


class SwarmError(Exception):
    """Base class of swarm errors."""


class WireError(SwarmError):
    """A datagram could not be decoded: what was wrong is in the message."""


class SwarmUsageError(SwarmError, ValueError):
    """An API call had invalid arguments (our caller's bug, not a peer's)."""


class SwarmUnavailable(SwarmError):
    """No peer answered: the put was stored nowhere else, or the lookup reached nobody. Queue and retry."""


class SwarmStopped(SwarmError):
    """The swarm is not running (call ``await start()`` first; or it was stopped during the operation)."""
