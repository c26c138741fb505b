"""URL routes: billing.console_urls (under /console/, staff with two-factor only)."""

from django.urls import URLPattern, URLResolver, path

from . import console

urlpatterns: list[URLPattern | URLResolver] = [
    path("", console.overview, name="console-overview"),
    path("otp/", console.otp, name="console-otp"),
    path("invoices/<int:invoice_id>/", console.invoice_detail, name="console-invoice"),
    path("invoices/<int:invoice_id>/adjust", console.adjust, name="console-adjust"),
    path("adjustments/<int:adjustment_id>/approve", console.approve, name="console-approve"),
    path("anomalies/<int:anomaly_id>/resolve", console.resolve_anomaly, name="console-resolve-anomaly"),
    path("<slug:name>/", console.listing, name="console-list"),
]
