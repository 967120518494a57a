"""`{% readonly_fieldsets %}`: the change form's fieldsets, as Django's `field_sets` block writes
them, for a form whose every field is read-only (the application's change page, issue 13).

Django renders `fieldset.html` for every field (~30 variable look-ups and a dozen conditions
each, ~a quarter of the page's CPU). Apart from each field's value, that HTML depends only on
the fieldsets (names, fields, classes: which ones a user sees follows their permissions), the
fields' labels and help texts and the language. So it is rendered by Django once per such shape,
with a marker in place of each value, and kept per process; a request then computes each
field's value with Django's own `AdminReadonlyField.contents()` and puts it between the pieces.
The HTML is Django's, byte for byte (tests/portal/test_admin_lists.py compares them).
"""

from __future__ import annotations

from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets
from django.template import Library
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language

register = Library()

# The body of the `field_sets` block of Django's admin/change_form.html.
FIELD_SETS = (
    "\n{% for fieldset in adminform %}\n"
    '  {% include "admin/includes/fieldset.html" with heading_level=2 prefix="fieldset" id_prefix=0'
    " id_suffix=forloop.counter0 %}\n"
    "{% endfor %}\n"
)
MARKER = "\x00readonly-value-{}\x00"
MAX_SHAPES = 64  # languages and permission variants; bounded all the same
_shapes: dict[tuple, tuple[list[str], list[tuple[str, bool]]]] = {}


class _MarkedField(helpers.AdminReadonlyField):
    """A read-only field whose value is a numbered marker (noted with what computes it)."""

    def __init__(self, form, field, is_first, model_admin=None, *, noted: list) -> None:
        super().__init__(form, field, is_first=is_first, model_admin=model_admin)
        self._noted, self._args = noted, (field, is_first)

    def contents(self) -> SafeString:
        self._noted.append(self._args)
        return mark_safe(MARKER.format(len(self._noted) - 1))  # noqa: S308 - a constant marker


class _MarkedLine(helpers.Fieldline):
    def __iter__(self):
        for i, field in enumerate(self.fields):
            yield _MarkedField(self.form, field, i == 0, self.model_admin, noted=self.noted)


class _MarkedFieldset(helpers.Fieldset):
    def __iter__(self):
        for field in self.fields:
            line = _MarkedLine(self.form, field, self.readonly_fields, model_admin=self.model_admin)
            line.noted = self.noted
            yield line


class _MarkedAdminForm(helpers.AdminForm):
    def __iter__(self):
        for name, options in self.fieldsets:
            fieldset = _MarkedFieldset(
                self.form, name, readonly_fields=self.readonly_fields, model_admin=self.model_admin, **options
            )
            fieldset.noted = self.noted
            yield fieldset


def _shape_key(adminform) -> tuple:
    fieldsets = tuple(
        (str(name), repr(sorted((k, repr(v)) for k, v in options.items()))) for name, options in adminform.fieldsets
    )
    return (
        get_language(),
        adminform.form._meta.model._meta.label,
        type(adminform.model_admin).__qualname__,
        fieldsets,
        tuple(adminform.readonly_fields),
        str(adminform.form.label_suffix),
    )


def _render_shape(context, adminform) -> tuple[list[str], list[tuple[str, bool]]] | None:
    marked = _MarkedAdminForm.__new__(_MarkedAdminForm)
    marked.__dict__.update(adminform.__dict__)
    marked.noted = []
    template = context.template.engine.from_string(FIELD_SETS)
    with context.push(adminform=marked):
        html = template.render(context)
    pieces = []
    for i in range(len(marked.noted)):
        before, found, html = html.partition(MARKER.format(i))
        if not found:
            return None
        pieces.append(before)
    if "\x00" in html:
        return None
    pieces.append(html)
    return pieces, marked.noted


def fast_fieldsets_apply(adminform) -> bool:
    """Whether the pieces may be used: an unbound form (no errors to show) of read-only fields."""
    every_field_read_only = set(flatten_fieldsets(adminform.fieldsets)) <= set(adminform.readonly_fields)
    return every_field_read_only and not adminform.form.is_bound


@register.simple_tag(takes_context=True)
def readonly_fieldsets(context, adminform) -> SafeString:
    """What `{% block field_sets %}` of Django's change form writes for this form."""
    form = adminform.form
    if not fast_fieldsets_apply(adminform):
        return context.template.engine.from_string(FIELD_SETS).render(context)
    key = _shape_key(adminform)
    shape = _shapes.get(key)
    if shape is None:
        shape = _render_shape(context, adminform)
        if shape is None:  # a marker went missing (a value not written once): Django's way
            return context.template.engine.from_string(FIELD_SETS).render(context)
        if len(_shapes) >= MAX_SHAPES:
            _shapes.clear()
        _shapes[key] = shape
    pieces, fields = shape
    out = [pieces[0]]
    for (name, is_first), piece in zip(fields, pieces[1:], strict=True):
        out.append(str(helpers.AdminReadonlyField(form, name, is_first, model_admin=adminform.model_admin).contents()))
        out.append(piece)
    return mark_safe("".join(out))  # noqa: S308 - Django's template output and Django's field values
