"""Seller- and buyer-facing metering API (DRF, API keys or session): lease usage, enrolment tokens,
key rotation, host revocation. The agent's own endpoints are in metering/api.py."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.api_auth import HasScope, acting_team, request_actor
from marketplace.api_support import READ_ERRORS, WRITE_ERRORS, problems
from marketplace.models import Scope

from . import selectors, services


class GpuUsageOut(serializers.Serializer[Any]):
    uuid = serializers.CharField()
    leased_seconds = serializers.IntegerField()
    delivered_seconds = serializers.IntegerField()
    unhealthy_seconds = serializers.IntegerField()
    energy_mj = serializers.IntegerField()
    reports = serializers.IntegerField()
    delivered = serializers.ListField(child=serializers.DictField(), help_text="Delivered intervals.")
    unhealthy = serializers.ListField(child=serializers.DictField(), help_text="Unhealthy intervals.")


class AnomalyOut(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    message = serializers.CharField()
    created_at = serializers.DateTimeField()


class LeaseUsageOut(serializers.Serializer[Any]):
    lease_id = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    as_of = serializers.DateTimeField()
    complete = serializers.BooleanField(help_text="False while late reports may still arrive.")
    leased_gpu_seconds = serializers.IntegerField()
    delivered_gpu_seconds = serializers.IntegerField()
    unhealthy_gpu_seconds = serializers.IntegerField()
    energy_mj = serializers.IntegerField()
    gpus = GpuUsageOut(many=True)
    anomalies = AnomalyOut(many=True)


class LeaseUsageApi(APIView):
    permission_classes = [HasScope(Scope.MARKET_READ)]

    @extend_schema(tags=["metering"], responses={200: LeaseUsageOut, **problems(*READ_ERRORS, 404)})
    def get(self, request: Request, lease_id: int) -> Response:
        """Verified delivery of a lease: per-GPU timeline, totals and anomalies (buyer and sellers)."""
        usage = selectors.lease_usage(team=acting_team(request), lease_id=lease_id)
        return Response(LeaseUsageOut(usage).data)


class TokenOut(serializers.Serializer[Any]):
    token = serializers.CharField(help_text="Give it to `gridx-agent enroll --token`; shown only now.")
    host = serializers.IntegerField()
    expires_at = serializers.DateTimeField()


def _token_response(issued: services.IssuedToken) -> Response:
    return Response({"token": issued.token, "host": issued.host_id, "expires_at": issued.expires_at}, 201)


class EnrolmentTokenApi(APIView):
    permission_classes = [HasScope(Scope.INVENTORY_WRITE)]

    @extend_schema(tags=["metering"], request=None, responses={201: TokenOut, **problems(*WRITE_ERRORS, 404)})
    def post(self, request: Request, host_id: int) -> Response:
        """A single-use, expiring enrolment token for the metering agent of one of your hosts."""
        return _token_response(
            services.enrolment_token_create(
                team=acting_team(request), actor=request_actor(request), host_id=host_id
            )
        )


class KeyRotateApi(APIView):
    permission_classes = [HasScope(Scope.INVENTORY_WRITE)]

    @extend_schema(tags=["metering"], request=None, responses={201: TokenOut, **problems(*WRITE_ERRORS, 404)})
    def post(self, request: Request, host_id: int) -> Response:
        """Start a key rotation: a token for `gridx-agent enroll --force`; the old key works until then."""
        return _token_response(
            services.key_rotate(team=acting_team(request), actor=request_actor(request), host_id=host_id)
        )


class RevokedOut(serializers.Serializer[Any]):
    host = serializers.IntegerField()
    keys_revoked = serializers.IntegerField()


class HostRevokeApi(APIView):
    permission_classes = [HasScope(Scope.INVENTORY_WRITE)]

    @extend_schema(
        tags=["metering"], request=None, responses={200: RevokedOut, **problems(*WRITE_ERRORS, 404)}
    )
    def post(self, request: Request, host_id: int) -> Response:
        """Revoke every key and unused token of a host; its reports are refused until it enrols again."""
        revoked = services.host_revoke(
            team=acting_team(request), actor=request_actor(request), host_id=host_id
        )
        return Response({"host": host_id, "keys_revoked": revoked})
