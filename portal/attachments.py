"""Applicants' PDFs leave the portal only as downloads: never public media, never rendered by
the browser, never cached by a proxy. Who may download is checked by the caller."""

from __future__ import annotations

from django.http import FileResponse, Http404

from portal.models import Application


def attachment_response(application: Application) -> FileResponse:
    if not application.attachment:
        raise Http404
    response = FileResponse(
        application.attachment.open("rb"),
        as_attachment=True,
        filename=application.attachment_name or f"application-{application.pk}.pdf",
        content_type="application/pdf",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
