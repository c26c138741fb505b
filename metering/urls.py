"""HTML-side routes of metering (mounted at /usage/): data the web pages chart."""

from django.urls import URLPattern, URLResolver, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("leases/<int:lease_id>.json", views.lease_usage_json, name="usage-lease-json"),
]
