"""Kept so existing `portal.services.errors` imports keep working; the class lives in
`portal.errors`, which apps outside the portal domain (allocations, billing) import."""

from portal.errors import PortalError

__all__ = ["PortalError"]
