"""Korean staff read the admin in Korean: column headers, field labels, the titles of inline
rows, the reasons the portal wrote, the e-mails to organisations and the organisation page."""

import re

from django.contrib import admin
from django.contrib.admin.utils import label_for_field
from django.utils import translation

HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Labels that read the same in Korean.
OURS = {"portal", "billing", "allocations"}
SAME_IN_KOREAN = {"ID", "#", "GPU", "GPUs", "UUID", "SSH", "PDF", "URL"}


def shown_names(model_admin) -> list[tuple[type, str, object]]:
    """(model, field or display name, admin) of every column and field the admin declares."""
    names = []
    for name in [*model_admin.list_display, *model_admin.readonly_fields, *(model_admin.fields or [])]:
        names.append((model_admin.model, name, model_admin))
    for inline in model_admin.inlines:
        for name in [*(inline.fields or []), *inline.readonly_fields]:
            names.append((inline.model, name, inline))
    return names


def test_every_column_and_field_label_of_the_admin_reads_in_korean():
    """An annotation, a display method without a description or a field without a verbose name
    shows its English name ("CREATED AT") as the column header of a Korean admin page."""
    english = set()
    with translation.override("ko"):
        for model_admin in admin.site._registry.values():
            for model, name, owner in shown_names(model_admin):
                if not isinstance(name, str) or name == "action_checkbox":
                    continue
                label = str(label_for_field(name, model, owner))
                if not HANGUL.search(label) and label not in SAME_IN_KOREAN:
                    english.add(
                        f"{type(owner).__name__ if not isinstance(owner, type) else owner.__name__}.{name}: {label}"
                    )
    assert sorted(english) == [], "\n".join(sorted(english))
