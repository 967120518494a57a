from django.urls import path

from billing import views, webhooks

app_name = "billing"
urlpatterns = [
    path("invoices/", views.invoice_list, name="invoice_list"),
    path("invoices/<int:pk>/pdf/", views.invoice_pdf, name="invoice_pdf"),
    path("invoices/<int:pk>/pay/", views.invoice_pay, name="invoice_pay"),
    path("credit-notes/<int:pk>/pdf/", views.credit_note_pdf, name="credit_note_pdf"),
    path("card/", views.card_setup, name="card_setup"),
    path("hour-packs/", views.hour_packs, name="hour_packs"),
    path("stripe/webhook/", webhooks.stripe_webhook, name="stripe_webhook"),
]
