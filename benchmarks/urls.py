"""The portal's URLs plus the reference page: a bare Django page with one indexed 20-row query,
measured in the same run as the portal's pages (the ratio to it is what the targets use)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from portal.models import Organisation
from portal.urls import urlpatterns as portal_urlpatterns


def reference(request: HttpRequest) -> HttpResponse:
    names = Organisation.objects.order_by("pk").values_list("pk", "name_en")[:20]
    return HttpResponse("".join(f"<p>{pk} {name}</p>" for pk, name in names))


@login_required
def signed_in_floor(request: HttpRequest) -> HttpResponse:
    """What every signed-in portal page costs before its own content: the session, the user,
    the middleware and the base layout (navigation, language switch), with an empty body. The
    distance between the reference and this page is not the dashboard's to win back."""
    return render(request, "base.html")


urlpatterns = [
    path("bench/reference/", reference),
    path("bench/signed-in/", signed_in_floor),
    *portal_urlpatterns,
]
