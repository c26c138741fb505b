"""URL routes: billing.urls (under /billing/): the team's billing pages and the Stripe webhook."""

from django.urls import URLPattern, URLResolver, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="billing-home"),
    path("statements/", views.statements, name="billing-statements"),
    path("statements/<int:statement_id>/", views.statement_detail, name="billing-statement"),
    path("invoices/<int:invoice_id>/", views.invoice_detail, name="billing-invoice"),
    path("leases/<int:lease_id>/", views.lease_detail, name="billing-lease"),
    path("payment-method", views.payment_method_setup, name="billing-payment-method"),
    path("earnings/", views.earnings, name="billing-earnings"),
    path("earnings/lines/", views.earnings_lines, name="billing-earnings-lines"),
    path("earnings/onboarding", views.onboarding_start, name="billing-onboarding"),
    path("stripe/webhook", views.stripe_webhook, name="billing-stripe-webhook"),
]
