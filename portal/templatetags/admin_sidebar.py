"""The admin's navigation sidebar, rendered once per distinct content (issue 13).

Django renders the sidebar (every app and model the user may see, with its links) on every admin
page: ~4 ms of a 30 ms page. Its HTML is a function of what the page's `available_apps` holds
(built from the user's permissions on this request), of which entry is the current page, and of
the language; the tag below keys a small cache on exactly those, so a user never receives a
sidebar built from anything but their own permissions of this request, and the HTML is
byte-for-byte what `{% include "admin/nav_sidebar.html" %}` writes.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock

from django import template
from django.template.defaultfilters import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language

register = template.Library()

MAX_ENTRIES = 256
_rendered: OrderedDict[tuple, str] = OrderedDict()
_lock = Lock()


def _current(url, path: str) -> bool:
    """`{% if url in request.path|urlencode %}` as the template tests it (no URL: false)."""
    try:
        return url in path
    except TypeError:
        return False


def sidebar_key(apps, path: str) -> tuple:
    """Everything nav_sidebar.html and app_list.html read, as a hashable value."""
    return tuple(
        (
            app["app_label"],
            str(app["name"]),
            app["app_url"],
            _current(app["app_url"], path),
            tuple(
                (
                    model["object_name"],
                    str(model["name"]),
                    model.get("admin_url"),
                    model.get("add_url"),
                    _current(model.get("admin_url"), path),
                )
                for model in app["models"]
            ),
        )
        for app in apps or ()
    )


@register.simple_tag(takes_context=True)
def nav_sidebar(context) -> SafeString:
    request = context.get("request")
    path = urlencode(request.path) if request is not None else ""
    key = (get_language(), sidebar_key(context.get("available_apps"), path))
    with _lock:
        html = _rendered.get(key)
        if html is not None:
            _rendered.move_to_end(key)
    if html is None:
        html = context.template.engine.get_template("admin/nav_sidebar.html").render(context)
        with _lock:
            _rendered[key] = html
            while len(_rendered) > MAX_ENTRIES:
                _rendered.popitem(last=False)
    return mark_safe(html)  # noqa: S308 - the template's own output, escaped when it was rendered
