"""HTML routes of the Developers pages (mounted at /developers/ in config/urls.py)."""

from django.urls import URLPattern, URLResolver, path

from . import developer_views as views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.keys, name="developers"),
    path("keys/new/", views.key_create, name="developers-key-create"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="developers-key-revoke"),
    path("keys/<int:key_id>/kill/", views.key_kill, name="developers-key-kill"),
    path("webhooks/", views.webhooks, name="developers-webhooks"),
    path("webhooks/new/", views.webhook_create, name="developers-webhook-create"),
    path("webhooks/<int:endpoint_id>/", views.webhook_detail, name="developers-webhook"),
    path("webhooks/<int:endpoint_id>/disable/", views.webhook_disable, name="developers-webhook-disable"),
    path("deliveries/<int:delivery_id>/replay/", views.delivery_replay, name="developers-delivery-replay"),
]
