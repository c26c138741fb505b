"""URL routes of /api/v1/metering/: the agent protocol (token- and signature-authenticated)."""

from django.urls import URLPattern, URLResolver, path

from . import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("enroll", api.enroll, name="metering-enroll"),
    path("reports", api.reports, name="metering-reports"),
]
