"""The OpenAPI schema against the running API, by schemathesis: generated requests (valid and
invalid) to every operation must never give a 5xx, must answer as the schema says (status, content
type, body), must refuse bad data, and must refuse missing or bad credentials."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from config.wsgi import application

from .conftest import World

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=12, deterministic=True
)


@pytest.fixture
def world(shared_world, db) -> World:
    return shared_world


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    # Called as a WSGI app, Django closes the database connection after each request, which would
    # end the test's transaction; Django's own test client disconnects these handlers the same way.
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def auth_header(world) -> dict[str, str]:
    from marketplace.models import Scope

    return {"Authorization": f"Bearer {world.key_with(list(Scope.values), name='fuzz')}"}


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_the_api_honours_its_schema(case, auth_header):
    # Every default check, plus ignored_auth (a request without or with bad credentials must be
    # refused). Not positive_data_acceptance: market rules (windows on the slot grid, not in the
    # past, inventory, limits) reject much schema-valid input by design, with a 422 naming the rule.
    case.call_and_validate(
        headers=auth_header, additional_checks=[ignored_auth], excluded_checks=[positive_data_acceptance]
    )
