class PortalError(Exception):
    """A domain rule refused the action; the message is for the user (translatable)."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
