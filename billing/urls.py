"""URL routes: billing.urls (under /billing/)."""

from django.urls import URLPattern, URLResolver, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("stripe/webhook", views.stripe_webhook, name="billing-stripe-webhook"),
]
