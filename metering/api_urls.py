"""URL routes of /api/v1/metering/: the agent protocol (token- and signature-authenticated) and the
teams' metering API (keys or session)."""

from django.urls import URLPattern, URLResolver, path

from . import api, team_api

urlpatterns: list[URLPattern | URLResolver] = [
    path("enroll", api.enroll, name="metering-enroll"),
    path("reports", api.reports, name="metering-reports"),
    path("leases/<int:lease_id>/usage", team_api.LeaseUsageApi.as_view(), name="api-lease-usage"),
    path("hosts/<int:host_id>/tokens", team_api.EnrolmentTokenApi.as_view(), name="api-host-token"),
    path("hosts/<int:host_id>/rotate", team_api.KeyRotateApi.as_view(), name="api-host-rotate"),
    path("hosts/<int:host_id>/revoke", team_api.HostRevokeApi.as_view(), name="api-host-revoke"),
]
