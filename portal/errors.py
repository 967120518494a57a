"""The one domain error type, shared by every app (portal, allocations, billing). It lives
outside `portal.services` so that other apps never import the portal's services."""


class PortalError(Exception):
    """A domain rule refused the action; the message is for the user (translatable)."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
