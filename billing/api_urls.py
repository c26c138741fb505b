"""URL routes: billing.api_urls (under /api/v1/billing/): the team billing API (`billing:read`)."""

from django.urls import URLPattern, URLResolver, path

from . import team_api

urlpatterns: list[URLPattern | URLResolver] = [
    path("statements", team_api.StatementListApi.as_view(), name="api-billing-statements"),
    path("invoices", team_api.InvoiceListApi.as_view(), name="api-billing-invoices"),
    path("invoices/<int:invoice_id>", team_api.InvoiceDetailApi.as_view(), name="api-billing-invoice"),
    path("payouts", team_api.PayoutListApi.as_view(), name="api-billing-payouts"),
]
