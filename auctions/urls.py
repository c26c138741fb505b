"""HTML routes (see config/urls.py for where they are mounted)."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
