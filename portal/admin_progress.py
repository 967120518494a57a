"""The admin side of job progress (portal/progress.py): a JSON status endpoint per row and a
read-only panel that `static/js/admin-progress.js` redraws while the job runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.http import Http404, HttpRequest, JsonResponse
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from portal.progress import steps_shown


class ProgressAdminMixin:
    """Adds `<pk>/progress/` (JSON) and a read-only `progress` panel to a ModelAdmin.

    The subclass implements `progress_of(obj) -> dict` with `state` (label), `finished` (bool),
    `summary` (one line) and `steps` (list of {"at", "text"})."""

    progress_of: Callable[[Any], dict[str, Any]]

    class Media:
        js = ["js/admin-progress.js"]

    def _shown_progress(self, obj) -> dict[str, Any]:
        """`progress_of` with its steps in Seoul time (`steps_shown`), for the panel and the JSON."""
        data = self.progress_of(obj)
        return {**data, "steps": steps_shown(data.get("steps") or [])}

    def _name(self, view: str) -> str:
        return f"{self.model._meta.app_label}_{self.model._meta.model_name}_{view}"

    def get_urls(self):
        return [
            path("<int:pk>/progress/", self.admin_site.admin_view(self.progress_view), name=self._name("progress")),
            *super().get_urls(),
        ]

    def progress_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        """The row's progress as JSON, for whoever may view the row (else 404)."""
        obj = self.get_queryset(request).filter(pk=pk).first()
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404
        return JsonResponse(self._shown_progress(obj))

    @admin.display(description=_("progress"))
    def progress(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "-"
        return render_to_string(
            "admin/progress/panel.html",
            {
                "url": reverse(f"admin:{self._name('progress')}", args=[obj.pk]),
                "page": reverse(f"admin:{self._name('change')}", args=[obj.pk]),
                "data": self._shown_progress(obj),
            },
        )
