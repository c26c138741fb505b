"""REST views of the market's core: the public catalogue, sellers' inventory, API keys, webhooks.

Each view validates input with a serializer, calls one selector or service, and serialises the
result. Errors are problem+json (marketplace.api_support).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .api_auth import HasScope, acting_team, expires_in, request_actor
from .api_support import (
    READ_ERRORS,
    WRITE_ERRORS,
    IdCursorPagination,
    StrictCharField,
    idempotent,
    paginated,
    problems,
)
from .errors import PermissionDenied
from .models import ApiKey, Cluster, Gpu, Host, Role, Scope, WebhookDelivery, WebhookEndpoint, WebhookEvent

# --- Public catalogue --------------------------------------------------------------------------


class GpuModelOut(serializers.Serializer[Any]):
    name = serializers.CharField()
    vendor = serializers.CharField()
    memory_gb = serializers.IntegerField()


class GpuModelListApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(tags=["market"], responses={200: GpuModelOut(many=True), **problems(429)})
    def get(self, request: Request) -> Response:
        """The GPU models that can be offered and bid for."""
        return Response(GpuModelOut(selectors.gpu_model_list(), many=True).data)


class PublicClusterOut(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="`team/name`, as in round files and the price index.")
    region = serializers.CharField()
    interconnect = serializers.CharField()
    gpus = serializers.DictField(child=serializers.IntegerField(), help_text="GPUs per model.")


class PublicClusterListApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(tags=["market"], responses={200: PublicClusterOut(many=True), **problems(429)})
    def get(self, request: Request) -> Response:
        """Every seller cluster's public fields (no hosts, no GPU identities)."""
        counts = selectors.cluster_gpu_counts()
        rows = [
            {"code": c.code, "region": c.region, "interconnect": c.interconnect, "gpus": counts.get(c.pk, {})}
            for c in selectors.cluster_list_public()
        ]
        return Response(PublicClusterOut(rows, many=True).data)


# --- Inventory -----------------------------------------------------------------------------------


class ClusterOut(serializers.ModelSerializer[Cluster]):
    code = serializers.CharField(read_only=True)

    class Meta:
        model = Cluster
        fields = ["id", "name", "code", "region", "interconnect", "created_at"]


class ClusterIn(serializers.Serializer[Any]):
    name = StrictCharField(max_length=50)
    region = StrictCharField(max_length=50)
    interconnect = StrictCharField(max_length=16, help_text="nvlink, infiniband, ethernet or pcie")


class ClusterListApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [HasScope(Scope.MARKET_READ if self.request.method == "GET" else Scope.INVENTORY_WRITE)()]

    @extend_schema(
        operation_id="clusters_list",
        tags=["inventory"],
        responses={200: ClusterOut(many=True), **problems(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        """Your team's clusters."""
        return Response(ClusterOut(selectors.cluster_list(team=acting_team(request)), many=True).data)

    @extend_schema(
        tags=["inventory"],
        request=ClusterIn,
        responses={201: ClusterOut, **problems(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "A cluster", value={"name": "sfo-a", "region": "us-west", "interconnect": "nvlink"}
            )
        ],
    )
    def post(self, request: Request) -> Response:
        """Add a cluster to your team's inventory."""
        data = ClusterIn(data=request.data)
        data.is_valid(raise_exception=True)
        team = acting_team(request)

        def handle(_key: str | None) -> Response:
            cluster = services.cluster_create(team=team, actor=request_actor(request), **data.validated_data)
            return Response(ClusterOut(cluster).data, status=201)

        return idempotent(request, team, handle)


class ClusterDetailApi(APIView):
    permission_classes = [HasScope(Scope.MARKET_READ)]

    @extend_schema(tags=["inventory"], responses={200: ClusterOut, **problems(*READ_ERRORS, 404)})
    def get(self, request: Request, cluster_id: int) -> Response:
        return Response(
            ClusterOut(selectors.cluster_get(team=acting_team(request), cluster_id=cluster_id)).data
        )


class HostOut(serializers.ModelSerializer[Host]):
    class Meta:
        model = Host
        fields = ["id", "cluster", "hostname", "created_at"]


class HostIn(serializers.Serializer[Any]):
    cluster = serializers.IntegerField(help_text="Id of one of your clusters.")
    hostname = StrictCharField(max_length=255)


class HostListApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [HasScope(Scope.MARKET_READ if self.request.method == "GET" else Scope.INVENTORY_WRITE)()]

    @extend_schema(tags=["inventory"], responses={200: HostOut(many=True), **problems(*READ_ERRORS)})
    def get(self, request: Request) -> Response:
        """Your team's hosts."""
        return Response(HostOut(selectors.host_list(team=acting_team(request)), many=True).data)

    @extend_schema(tags=["inventory"], request=HostIn, responses={201: HostOut, **problems(*WRITE_ERRORS)})
    def post(self, request: Request) -> Response:
        """Register a host in one of your clusters."""
        data = HostIn(data=request.data)
        data.is_valid(raise_exception=True)
        team = acting_team(request)

        def handle(_key: str | None) -> Response:
            host = services.host_register(
                team=team,
                actor=request_actor(request),
                cluster_id=data.validated_data["cluster"],
                hostname=data.validated_data["hostname"],
            )
            return Response(HostOut(host).data, status=201)

        return idempotent(request, team, handle)


class GpuOut(serializers.ModelSerializer[Gpu]):
    gpu_model = serializers.CharField(source="gpu_model.name")

    class Meta:
        model = Gpu
        fields = ["id", "host", "gpu_model", "uuid"]


class GpuIn(serializers.Serializer[Any]):
    host = serializers.IntegerField(help_text="Id of one of your hosts.")
    gpu_model = StrictCharField(max_length=64)
    uuid = StrictCharField(max_length=100, help_text="NVML UUID, `GPU-…` or `MIG-…`.")


class GpuListApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [HasScope(Scope.MARKET_READ if self.request.method == "GET" else Scope.INVENTORY_WRITE)()]

    @extend_schema(tags=["inventory"], responses={200: GpuOut(many=True), **problems(*READ_ERRORS)})
    def get(self, request: Request) -> Response:
        """Your team's GPUs."""
        return Response(GpuOut(selectors.gpu_list(team=acting_team(request)), many=True).data)

    @extend_schema(tags=["inventory"], request=GpuIn, responses={201: GpuOut, **problems(*WRITE_ERRORS)})
    def post(self, request: Request) -> Response:
        """Declare a GPU on one of your hosts (the metering agent must later report the same UUID)."""
        data = GpuIn(data=request.data)
        data.is_valid(raise_exception=True)
        team = acting_team(request)

        def handle(_key: str | None) -> Response:
            gpu = services.gpu_register(
                team=team,
                actor=request_actor(request),
                host_id=data.validated_data["host"],
                gpu_model=data.validated_data["gpu_model"],
                uuid=data.validated_data["uuid"],
            )
            return Response(GpuOut(gpu).data, status=201)

        return idempotent(request, team, handle)


# --- API keys --------------------------------------------------------------------------------------


class ApiKeyOut(serializers.ModelSerializer[ApiKey]):
    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "exposure_cap_cents",
            "killed_at",
            "rate_limit_per_minute",
        ]


class ApiKeyCreatedOut(ApiKeyOut):
    key = serializers.CharField(help_text="The secret key, shown only in this response. Store it now.")

    class Meta(ApiKeyOut.Meta):
        fields = [*ApiKeyOut.Meta.fields, "key"]


class ApiKeyIn(serializers.Serializer[Any]):
    name = StrictCharField(max_length=100)
    scopes = serializers.ListField(child=StrictCharField(max_length=32), min_length=1)
    expires_in_days = serializers.IntegerField(required=False, min_value=1, max_value=3650)
    exposure_cap_cents = serializers.IntegerField(required=False, min_value=0, max_value=2**62)
    rate_limit_per_minute = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)


def _require_session_owner(request: Request) -> None:
    # Keys are made by people: a leaked key must not be able to mint more keys.
    acting_team(request)
    if isinstance(request.auth, ApiKey) or getattr(request, "_gridx_role", None) != Role.OWNER:
        raise PermissionDenied("API keys are managed by a team owner signed in to the web app")


class ApiKeyListApi(APIView):
    permission_classes = [HasScope(Scope.MARKET_READ)]

    @extend_schema(tags=["keys"], responses={200: ApiKeyOut(many=True), **problems(*READ_ERRORS)})
    def get(self, request: Request) -> Response:
        """Your team's API keys (never their secrets)."""
        return Response(ApiKeyOut(selectors.api_key_list(team=acting_team(request)), many=True).data)

    @extend_schema(
        tags=["keys"], request=ApiKeyIn, responses={201: ApiKeyCreatedOut, **problems(*WRITE_ERRORS)}
    )
    def post(self, request: Request) -> Response:
        """Create a key (team owners, signed in); the secret is in this response only."""
        _require_session_owner(request)
        data = ApiKeyIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        key, raw = services.api_key_create(
            team=acting_team(request),
            actor=request_actor(request),
            name=v["name"],
            scopes=v["scopes"],
            expires_at=expires_in(v.get("expires_in_days")),
            exposure_cap_cents=v.get("exposure_cap_cents"),
            rate_limit_per_minute=v.get("rate_limit_per_minute"),
        )
        out = ApiKeyOut(key).data
        return Response({**out, "key": raw}, status=201)


class ApiKeyRevokeApi(APIView):
    permission_classes = [HasScope(Scope.MARKET_READ)]

    @extend_schema(tags=["keys"], request=None, responses={200: ApiKeyOut, **problems(*WRITE_ERRORS, 404)})
    def post(self, request: Request, key_id: int) -> Response:
        """Revoke a key (team owners, signed in). Its open bids stay; use kill to cancel them too."""
        _require_session_owner(request)
        key = services.api_key_revoke(team=acting_team(request), actor=request_actor(request), key_id=key_id)
        return Response(ApiKeyOut(key).data)


# --- Webhooks ---------------------------------------------------------------------------------------


class WebhookEndpointOut(serializers.ModelSerializer[WebhookEndpoint]):
    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "active", "description", "created_at", "disabled_at"]


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret = serializers.CharField(help_text="The signing secret, shown only in this response.")

    class Meta(WebhookEndpointOut.Meta):
        fields = [*WebhookEndpointOut.Meta.fields, "secret"]


class WebhookEndpointIn(serializers.Serializer[Any]):
    url = StrictCharField(max_length=500)
    events = serializers.ListField(
        child=StrictCharField(max_length=40), min_length=1, help_text=", ".join(WebhookEvent.values)
    )
    description = StrictCharField(max_length=200, required=False, default="", allow_blank=True)


class WebhookEndpointListApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [HasScope(Scope.MARKET_READ if self.request.method == "GET" else Scope.WEBHOOKS_WRITE)()]

    @extend_schema(
        operation_id="webhooks_list",
        tags=["webhooks"],
        responses={200: WebhookEndpointOut(many=True), **problems(*READ_ERRORS)},
    )
    def get(self, request: Request) -> Response:
        """Your team's webhook endpoints."""
        return Response(
            WebhookEndpointOut(selectors.webhook_endpoint_list(team=acting_team(request)), many=True).data
        )

    @extend_schema(
        tags=["webhooks"],
        request=WebhookEndpointIn,
        responses={201: WebhookEndpointCreatedOut, **problems(*WRITE_ERRORS)},
        examples=[
            OpenApiExample(
                "Outcomes",
                value={
                    "url": "https://bot.example/gridx",
                    "events": ["bid.won", "bid.lost", "round.cleared"],
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        """Register an endpoint; the response holds its signing secret, once."""
        data = WebhookEndpointIn(data=request.data)
        data.is_valid(raise_exception=True)
        team = acting_team(request)

        def handle(_key: str | None) -> Response:
            endpoint, secret = services.webhook_endpoint_create(
                team=team, actor=request_actor(request), **data.validated_data
            )
            return Response({**WebhookEndpointOut(endpoint).data, "secret": secret}, status=201)

        return idempotent(request, team, handle)


class WebhookEndpointDetailApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [HasScope(Scope.MARKET_READ if self.request.method == "GET" else Scope.WEBHOOKS_WRITE)()]

    @extend_schema(tags=["webhooks"], responses={200: WebhookEndpointOut, **problems(*READ_ERRORS, 404)})
    def get(self, request: Request, endpoint_id: int) -> Response:
        endpoint = selectors.webhook_endpoint_get(team=acting_team(request), endpoint_id=endpoint_id)
        return Response(WebhookEndpointOut(endpoint).data)

    @extend_schema(tags=["webhooks"], responses={200: WebhookEndpointOut, **problems(*WRITE_ERRORS, 404)})
    def delete(self, request: Request, endpoint_id: int) -> Response:
        """Disable an endpoint: nothing more is sent to it; its delivery log stays."""
        endpoint = services.webhook_endpoint_disable(
            team=acting_team(request), actor=request_actor(request), endpoint_id=endpoint_id
        )
        return Response(WebhookEndpointOut(endpoint).data)


class WebhookAttemptOut(serializers.Serializer[Any]):
    number = serializers.IntegerField()
    at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    response = serializers.CharField()
    error = serializers.CharField()
    duration_ms = serializers.IntegerField()


class WebhookDeliveryOut(serializers.ModelSerializer[WebhookDelivery]):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event",
            "event_id",
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "next_attempt_at",
            "delivered_at",
            "replay_of",
            "created_at",
        ]


class WebhookDeliveryDetailOut(WebhookDeliveryOut):
    payload = serializers.CharField(help_text="The exact body that was signed and sent.")
    attempt_log = WebhookAttemptOut(many=True)

    class Meta(WebhookDeliveryOut.Meta):
        fields = [*WebhookDeliveryOut.Meta.fields, "payload", "attempt_log"]


class WebhookDeliveryListApi(APIView):
    permission_classes = [HasScope(Scope.MARKET_READ)]

    @extend_schema(
        operation_id="webhooks_deliveries_list",
        tags=["webhooks"],
        responses={200: paginated(WebhookDeliveryOut), **problems(*READ_ERRORS, 404)},
    )
    def get(self, request: Request, endpoint_id: int) -> Response:
        """The delivery log of one endpoint, newest first, with cursor pagination."""
        team = acting_team(request)
        selectors.webhook_endpoint_get(team=team, endpoint_id=endpoint_id)
        paginator = IdCursorPagination()
        page = paginator.paginate_queryset(
            selectors.webhook_delivery_list(team=team, endpoint_id=endpoint_id), request, view=self
        )
        return paginator.get_paginated_response(WebhookDeliveryOut(page, many=True).data)


class WebhookDeliveryDetailApi(APIView):
    permission_classes = [HasScope(Scope.MARKET_READ)]

    @extend_schema(
        tags=["webhooks"], responses={200: WebhookDeliveryDetailOut, **problems(*READ_ERRORS, 404)}
    )
    def get(self, request: Request, delivery_id: int) -> Response:
        """One delivery with its body and every attempt's status and response."""
        delivery = selectors.webhook_delivery_get(team=acting_team(request), delivery_id=delivery_id)
        return Response(WebhookDeliveryDetailOut(delivery).data)


class WebhookDeliveryReplayApi(APIView):
    permission_classes = [HasScope(Scope.WEBHOOKS_WRITE)]

    @extend_schema(
        tags=["webhooks"], request=None, responses={202: WebhookDeliveryOut, **problems(*WRITE_ERRORS, 404)}
    )
    def post(self, request: Request, delivery_id: int) -> Response:
        """Send a delivery again (same event id and body, fresh signature) as a new delivery."""
        replay = services.webhook_delivery_replay(
            team=acting_team(request), actor=request_actor(request), delivery_id=delivery_id
        )
        return Response(WebhookDeliveryOut(replay).data, status=202)
