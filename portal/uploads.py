"""Request size limits. DATA_UPLOAD_MAX_MEMORY_SIZE does not count uploaded files and
FILE_UPLOAD_MAX_MEMORY_SIZE only decides memory or disk, so without these a client could stream
gigabytes into a temporary file before any form sees the size. Largest legitimate request: one
10 MB PDF plus the form's fields. The proxy in front caps it too (docs/operations.md)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _


def max_request_bytes() -> int:
    return settings.MAX_UPLOAD_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class RequestSizeLimitMiddleware:
    """A request that announces a body larger than any form of the portal takes is answered 413
    at once, before its body is read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > max_request_bytes():
            message = _("The upload is too large: attachments may be at most 10 MB.")
            return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class SizeLimitedUploadHandler(FileUploadHandler):
    """First of FILE_UPLOAD_HANDLERS: counts the bytes of every file of the request (a body sent
    without a length, or lying about it) and aborts beyond the limit with a 400."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None) -> None:
        self.total = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.total = getattr(self, "total", 0) + len(raw_data)
        if self.total > max_request_bytes():  # slack above 10 MB: the form says "larger than 10 MB"
            raise RequestDataTooBig("Uploaded files exceed the request size limit.")
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
