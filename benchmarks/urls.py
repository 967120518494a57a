"""The portal's URLs plus the reference page: a bare Django page with one indexed 20-row query,
measured in the same run as the portal's pages (the ratio to it is what the targets use)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from portal.models import Organisation
from portal.urls import urlpatterns as portal_urlpatterns


def reference(request: HttpRequest) -> HttpResponse:
    names = Organisation.objects.order_by("pk").values_list("pk", "name_en")[:20]
    return HttpResponse("".join(f"<p>{pk} {name}</p>" for pk, name in names))


urlpatterns = [path("bench/reference/", reference), *portal_urlpatterns]
