from django.urls import path

from allocations import api, views

app_name = "allocations"

urlpatterns = [
    path("keys/", views.key_list, name="key_list"),
    path("keys/<int:pk>/delete/", views.key_delete, name="key_delete"),
    path("grants/<int:pk>/", views.grant_detail, name="grant_detail"),
    path("api/v1/nodes/<str:hostname>/samples", api.node_samples, name="node_samples"),
    path("grants/<int:pk>/jupyter/restart/", views.grant_restart_jupyter, name="grant_restart_jupyter"),
]
