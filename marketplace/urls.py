"""HTML routes of the market: the public market pages, accounts and teams (mounted at /)."""

from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.status_page, name="market"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="account/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("team/new/", views.team_create_page, name="team-create"),
    path("team/switch/", views.team_switch_view, name="team-switch"),
]
