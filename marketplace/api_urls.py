"""URL routes of the market's core API (mounted at /api/v1/)."""

from django.urls import URLPattern, URLResolver, path

from . import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("market/gpu-models", api.GpuModelListApi.as_view(), name="api-gpu-models"),
    path("market/clusters", api.PublicClusterListApi.as_view(), name="api-market-clusters"),
    path("clusters", api.ClusterListApi.as_view(), name="api-clusters"),
    path("clusters/<int:cluster_id>", api.ClusterDetailApi.as_view(), name="api-cluster"),
    path("hosts", api.HostListApi.as_view(), name="api-hosts"),
    path("gpus", api.GpuListApi.as_view(), name="api-gpus"),
    path("keys", api.ApiKeyListApi.as_view(), name="api-keys"),
    path("keys/<int:key_id>/revoke", api.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("webhooks", api.WebhookEndpointListApi.as_view(), name="api-webhooks"),
    path("webhooks/<int:endpoint_id>", api.WebhookEndpointDetailApi.as_view(), name="api-webhook"),
    path(
        "webhooks/<int:endpoint_id>/deliveries",
        api.WebhookDeliveryListApi.as_view(),
        name="api-webhook-deliveries",
    ),
    path("webhook-deliveries/<int:delivery_id>", api.WebhookDeliveryDetailApi.as_view(), name="api-delivery"),
    path(
        "webhook-deliveries/<int:delivery_id>/replay",
        api.WebhookDeliveryReplayApi.as_view(),
        name="api-delivery-replay",
    ),
]
