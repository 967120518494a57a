from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path
from django.utils.translation import gettext_lazy

from allocations.admin_fleet import fleet_view
from billing import views as billing_views
from portal import views
from portal.metrics import metrics_view

# The admin signs in through allauth, so MFA applies there too.
admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = gettext_lazy("GPU Portal")
admin.site.site_title = gettext_lazy("GPU Portal administration")  # the browser tab, not "Django site admin"

portal_patterns = [
    path("", views.home, name="home"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("organisations/", views.organisation_list, name="organisation_list"),
    path("organisations/new/", views.organisation_create, name="organisation_create"),
    path("organisations/<int:pk>/", views.organisation_detail, name="organisation_detail"),
    path("organisations/<int:pk>/invitations/", views.invitation_create, name="invitation_create"),
    path("organisations/<int:pk>/members/<int:membership_pk>/", views.membership_update, name="membership_update"),
    path(
        "organisations/<int:pk>/business-registration/",
        views.organisation_brn_document,
        name="organisation_brn_document",
    ),
    path("organisations/invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("calls/", views.call_list, name="call_list"),
    path("calls/<int:pk>/apply/", views.application_apply, name="application_apply"),
    path("applications/", views.application_list, name="application_list"),
    path("applications/<int:pk>/", views.application_detail, name="application_detail"),
    path("applications/<int:pk>/edit/", views.application_edit, name="application_edit"),
    path("applications/<int:pk>/withdraw/", views.application_withdraw, name="application_withdraw"),
    path(
        "applications/<int:pk>/principal-investigator/",
        views.application_change_pi,
        name="application_change_pi",
    ),
    path("applications/<int:pk>/attachment/", views.application_attachment, name="application_attachment"),
]

urlpatterns = [
    path("", include((portal_patterns, "portal"))),
    path("", include("allocations.urls")),
    path("rates/", billing_views.rate_card, name="rates"),
    path("billing/", include("billing.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus, not public (portal/metrics.py)
    path("accounts/", include("allauth.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/fleet/", admin.site.admin_view(fleet_view), name="admin_fleet"),
    path("admin/", admin.site.urls),
]
