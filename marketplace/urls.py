"""HTML routes of the market: the public market pages, accounts and teams (mounted at /)."""

from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.market_page, name="market"),
    path("market/prices.json", views.market_prices_json, name="market-prices"),
    path("market/rounds/<int:number>/", views.round_page, name="market-round"),
    path("market/rounds/<int:number>/report.json", views.round_report_json, name="market-round-report"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="account/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup_page, name="signup"),
    path("team/", views.team_page, name="team"),
    path("team/new/", views.team_create_page, name="team-create"),
    path("team/switch/", views.team_switch_view, name="team-switch"),
    path("team/invite/", views.team_invite, name="team-invite"),
    path("team/invite/<str:token>/", views.invitation_page, name="team-invitation"),
    path(
        "team/invitations/<int:invitation_id>/revoke/",
        views.team_invitation_revoke,
        name="team-invitation-revoke",
    ),
    path("team/members/<int:membership_id>/role/", views.team_member_role, name="team-member-role"),
    path("team/members/<int:membership_id>/remove/", views.team_member_remove, name="team-member-remove"),
]
