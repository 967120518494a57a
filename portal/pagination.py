"""One way to cut a list into pages: every list a user can grow (applications, members) is read
a page at a time, so a page costs the same for an organisation of five and of a thousand."""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

PER_PAGE = 50


def paginate(request: HttpRequest, queryset: QuerySet, *, per_page: int = PER_PAGE, param: str = "page") -> Page:
    """The requested page of `queryset` (`?page=N`); a missing, bad or too large number gives
    the first or last page rather than an error."""
    return Paginator(queryset, per_page).get_page(request.GET.get(param))
