"""The team billing API (`billing:read`): statements, invoices with their lines, payouts.

Reads only, for the caller's team: another team's invoice is 404. Lists are newest first with cursor
pagination; errors are problem+json (marketplace.api_support), exactly like the rest of /api/v1/.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api_auth import HasScope, acting_team
from marketplace.api_support import READ_ERRORS, IdCursorPagination, paginated, problems
from marketplace.models import Scope

from . import selectors
from .models import Invoice, Payout, Statement

PAGE_PARAMS = [
    OpenApiParameter("cursor", str),
    OpenApiParameter("limit", int, description="Page size, at most 1000 (default 100)."),
]


class StatementOut(serializers.ModelSerializer[Statement]):
    lease = serializers.IntegerField(source="lease_id", help_text="The lease this statement bills.")
    invoice = serializers.IntegerField(source="invoice_id", allow_null=True)
    net_cents = serializers.IntegerField(help_text="What the buyer owes for it: charge less credit.")
    price_cents_per_gpu_hour = serializers.SerializerMethodField(
        help_text="The lease's price per GPU-hour, rounded for display; charges use the exact fraction "
        "lease_payment_cents / lease_gpu_seconds."
    )

    class Meta:
        model = Statement
        fields = [
            "id",
            "lease",
            "day",
            "seq",
            "kind",
            "currency",
            "window_start",
            "window_end",
            "leased_gpu_seconds",
            "delivered_gpu_seconds",
            "open_anomalies",
            "lease_payment_cents",
            "lease_gpu_seconds",
            "price_cents_per_gpu_hour",
            "charge_cents",
            "credit_cents",
            "net_cents",
            "invoice",
            "created_at",
        ]

    def get_price_cents_per_gpu_hour(self, obj: Statement) -> int:
        return selectors.price_cents_per_gpu_hour(obj.lease_payment_cents, obj.lease_gpu_seconds)


class InvoiceOut(serializers.ModelSerializer[Invoice]):
    class Meta:
        model = Invoice
        fields = [
            "id",
            "currency",
            "period_start",
            "period_end",
            "status",
            "amount_cents",
            "stripe_invoice_id",
            "paid_at",
            "failed_at",
            "created_at",
        ]


class InvoiceDetailOut(InvoiceOut):
    lines = StatementOut(
        many=True, read_only=True, help_text="The invoice's statements, each naming its lease."
    )

    class Meta(InvoiceOut.Meta):
        fields = [*InvoiceOut.Meta.fields, "lines"]


class PayoutOut(serializers.ModelSerializer[Payout]):
    invoice = serializers.IntegerField(
        source="invoice_id", help_text="The buyer's paid invoice it comes from."
    )

    class Meta:
        model = Payout
        fields = [
            "id",
            "invoice",
            "amount_cents",
            "currency",
            "status",
            "stripe_transfer_id",
            "last_error",
            "created_at",
            "sent_at",
        ]


def _page(view: APIView, request: Request, rows: Any, out: type[serializers.Serializer[Any]]) -> Response:
    paginator = IdCursorPagination()
    page: list[Any] | None = paginator.paginate_queryset(rows, request, view=view)
    return paginator.get_paginated_response(out(page, many=True).data)


class StatementListApi(APIView):
    permission_classes = [HasScope(Scope.BILLING_READ)]

    @extend_schema(
        operation_id="billing_statements_list",
        tags=["billing"],
        parameters=PAGE_PARAMS,
        responses={200: paginated(StatementOut), **problems(*READ_ERRORS, 422)},
    )
    def get(self, request: Request) -> Response:
        """Your team's statements as a buyer (one per lease and UTC day, and adjustments), newest first."""
        return _page(self, request, selectors.statement_list(team=acting_team(request)), StatementOut)


class InvoiceListApi(APIView):
    permission_classes = [HasScope(Scope.BILLING_READ)]

    @extend_schema(
        operation_id="billing_invoices_list",
        tags=["billing"],
        parameters=PAGE_PARAMS,
        responses={200: paginated(InvoiceOut), **problems(*READ_ERRORS, 422)},
    )
    def get(self, request: Request) -> Response:
        """Your team's invoices, newest first (lines: GET /billing/invoices/{id})."""
        return _page(self, request, selectors.invoice_list(team=acting_team(request)), InvoiceOut)


class InvoiceDetailApi(APIView):
    permission_classes = [HasScope(Scope.BILLING_READ)]

    @extend_schema(
        operation_id="billing_invoices_retrieve",
        tags=["billing"],
        responses={200: InvoiceDetailOut, **problems(*READ_ERRORS, 404)},
    )
    def get(self, request: Request, invoice_id: int) -> Response:
        """One of your invoices with its lines: each a statement with its lease, delivered GPU-seconds
        and price. Another team's invoice is 404."""
        invoice = selectors.invoice_get(team=acting_team(request), invoice_id=invoice_id)
        invoice.lines = list(selectors.invoice_lines(invoice=invoice))  # type: ignore[attr-defined]
        return Response(InvoiceDetailOut(invoice).data)


class PayoutListApi(APIView):
    permission_classes = [HasScope(Scope.BILLING_READ)]

    @extend_schema(
        operation_id="billing_payouts_list",
        tags=["billing"],
        parameters=PAGE_PARAMS,
        responses={200: paginated(PayoutOut), **problems(*READ_ERRORS, 422)},
    )
    def get(self, request: Request) -> Response:
        """Your team's payouts as a seller, with their Stripe state, newest first."""
        return _page(self, request, selectors.payout_list(team=acting_team(request)), PayoutOut)
