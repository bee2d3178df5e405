"""Domain errors shared by the whole mesh.

Core code raises these; the transport adapters map them to wire codes in ONE place each (the gRPC
server interceptor in :mod:`mesh.serving`, the gateway's HTTP handlers). The message of a domain error
is meant for the caller and is sent over the wire; any other exception is reported as a generic
internal error and its message stays in the server log.
"""

from __future__ import annotations

from typing import ClassVar


class MeshError(Exception):
    """Base of all domain errors. ``retryable`` says whether the same call may succeed later."""

    retryable: ClassVar[bool] = False


class NotFound(MeshError):
    """The thing asked for does not exist (or is not visible to this caller)."""


class InvalidArgument(MeshError):
    """The request is malformed or violates a precondition on its content; retrying will not help."""


class PermissionDenied(MeshError):
    """The caller is known but not allowed to do this."""


class Unavailable(MeshError):
    """A dependency (model, feature store, broker) is not available right now; retry with backoff."""

    retryable: ClassVar[bool] = True


__all__ = ["InvalidArgument", "MeshError", "NotFound", "PermissionDenied", "Unavailable"]
