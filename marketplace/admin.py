"""Staff views of the market's core; edits go through the same database constraints."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import Bid, Cluster, Gpu, GpuModel, Host, Membership, Offer, Team, User


@admin.register(User)
class UserAdmin(BaseUserAdmin[User]):
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_staff", "is_active")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline[Membership, Team]):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin[Team]):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    inlines = (MembershipInline,)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin[Membership]):
    list_display = ("team", "user", "role")
    list_filter = ("role",)
    search_fields = ("team__name", "user__email")


@admin.register(GpuModel)
class GpuModelAdmin(admin.ModelAdmin[GpuModel]):
    list_display = ("name", "vendor", "memory_gb", "display_name")
    search_fields = ("name", "display_name")


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin[Cluster]):
    list_display = ("name", "team", "region", "interconnect")
    list_filter = ("region", "interconnect")
    search_fields = ("name", "team__name")


@admin.register(Host)
class HostAdmin(admin.ModelAdmin[Host]):
    list_display = ("hostname", "cluster")
    search_fields = ("hostname",)
    list_select_related = ("cluster",)


@admin.register(Gpu)
class GpuAdmin(admin.ModelAdmin[Gpu]):
    list_display = ("uuid", "gpu_model", "host")
    list_filter = ("gpu_model",)
    search_fields = ("uuid", "host__hostname")
    list_select_related = ("gpu_model", "host")


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin[Offer]):
    list_display = (
        "id",
        "team",
        "cluster",
        "gpu_model",
        "gpus",
        "start",
        "end",
        "reserve_cents_per_gpu_hour",
        "status",
    )
    list_filter = ("status", "gpu_model")
    search_fields = ("team__name", "cluster__name")
    list_select_related = ("team", "cluster", "gpu_model")


@admin.register(Bid)
class BidAdmin(admin.ModelAdmin[Bid]):
    list_display = (
        "id",
        "team",
        "gpus",
        "min_gpus",
        "duration_hours",
        "earliest_start",
        "latest_end",
        "limit_cents_per_gpu_hour",
        "status",
    )
    list_filter = ("status", "colocate")
    search_fields = ("team__name", "xor_group")
    list_select_related = ("team",)
    filter_horizontal = ("gpu_models",)
