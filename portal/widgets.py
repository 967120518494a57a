"""Form widgets of the portal."""

from __future__ import annotations

from django import forms
from django.utils.html import format_html
from django.utils.translation import gettext as _


class AttachmentInput(forms.FileInput):
    """A file input that names the file already attached by its original name, never by its
    storage path (Django's ClearableFileInput links the storage URL, which is not served)."""

    current_name: str = ""

    def render(self, name, value, attrs=None, renderer=None) -> str:
        html = super().render(name, value, attrs, renderer)
        if not self.current_name:
            return html
        return format_html(
            '<p class="current-file">{} <strong>{}</strong></p>{}',
            _("Attached now:"),
            self.current_name,
            html,
        )
