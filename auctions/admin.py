"""Staff views of rounds and their results; a round's snapshot, result and report download as files."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from .models import BidOutcome, Lease, LeaseGpu, LeaseSource, Notification, OfferFill, PricePoint, Round


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin[Round]):
    list_display = ("number", "status", "cutoff_at", "horizon_start", "clearing_attempts", "downloads")
    list_filter = ("status",)
    readonly_fields = [f.name for f in Round._meta.fields]
    exclude = ("snapshot", "result", "report")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rounds are opened by the beat or `round_open`, never by hand

    @admin.display(description="files")
    def downloads(self, obj: Round) -> str:
        links = [
            format_html(
                '<a href="{}">{}</a>', reverse("admin:auctions_round_file", args=[obj.pk, kind]), kind
            )
            for kind in ("snapshot", "result", "report")
            if getattr(obj, kind)
        ]
        return format_html(" · ".join(["{}"] * len(links)), *links) if links else "–"

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path(
                "<int:round_id>/file/<str:kind>/",
                self.admin_site.admin_view(self.download),
                name="auctions_round_file",
            )
        ]
        return extra + super().get_urls()

    def download(self, request: HttpRequest, round_id: int, kind: str) -> HttpResponse:
        if kind not in {"snapshot", "result", "report"}:
            return HttpResponse(status=404)
        round_ = Round.objects.get(pk=round_id)
        names = {"snapshot": "round", "result": "result", "report": "report"}
        response = HttpResponse(getattr(round_, kind), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{names[kind]}-{round_.number}.json"'
        return response


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Clearing results are history: staff read them, corrections happen elsewhere."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ("id", "round", "team", "gpu_model", "gpus", "start", "end", "payment_cents")
    list_select_related = ("round", "team", "gpu_model")


for model in (LeaseSource, LeaseGpu, BidOutcome, OfferFill, PricePoint, Notification):
    admin.site.register(model, ReadOnlyAdmin)
