"""Who is calling the API, for which team, with which rights, and how often.

Bots authenticate with `Authorization: Bearer gx_<prefix>_<secret>`; the web UI's own calls use the
session (with CSRF) and name their team in a `Gridx-Team` header when the user has several. A
session's scopes follow the user's role in that team.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import time
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.request import Request

from . import services
from .db import prepared_cursor
from .errors import InvalidInput, KeyRefused, NotFound
from .models import ApiKey, Membership, Role, Scope, Team, User
from .web import SESSION_TEAM

ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(Scope.values),
    Role.TRADER: frozenset(
        {Scope.MARKET_READ, Scope.BIDS_WRITE, Scope.OFFERS_WRITE, Scope.INVENTORY_WRITE, Scope.WEBHOOKS_WRITE}
    ),
    Role.VIEWER: frozenset({Scope.MARKET_READ}),
    Role.BILLING: frozenset({Scope.MARKET_READ, Scope.BILLING_READ}),
}
TEAM_HEADER = "Gridx-Team"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer gx_…`: the request's user is the key's creator, `request.auth` the key."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = request.headers.get("Authorization", "")
        scheme, _, raw = header.partition(" ")
        if scheme != self.keyword:
            return None
        raw = raw.strip()
        parts = _parse_bearer(raw)
        if parts is None:
            raise exceptions.AuthenticationFailed(
                "malformed API key: expected 'Bearer gx_<prefix>_<secret>'", code="bad_api_key"
            )
        key = ApiKey.objects.select_related("team").filter(prefix=parts[1]).first()
        now = timezone.now()
        if (refusal := _key_refusal(key, raw, now)) is not None:
            raise refusal
        assert key is not None
        services.api_key_touch(key=key, now=now)
        return (KeyUser(key), key)

    def authenticate_header(self, request: Request) -> str:
        return KeyRefused.challenge


def _parse_bearer(raw: str) -> list[str] | None:
    parts = raw.split("_", 2)
    return parts if len(parts) == 3 and parts[0] == "gx" and parts[1] else None


def _key_refusal(key: ApiKey | None, raw: str, now: dt.datetime) -> exceptions.AuthenticationFailed | None:
    """Why the key found by the prefix of `raw` does not authenticate it, or None when it does."""
    if key is None or not hmac.compare_digest(key.key_sha256, services.api_key_hash(raw)):
        return exceptions.AuthenticationFailed("unknown API key", code="bad_api_key")
    if (refusal := services.api_key_refusal(key.prefix, key.revoked_at, key.expires_at, now=now)) is not None:
        return exceptions.AuthenticationFailed(refusal.message, code=refusal.code)
    return None


_KEY_FIELDS = ApiKey._meta.concrete_fields
_TEAM_FIELDS = Team._meta.concrete_fields


@functools.cache
def _key_lookup_sql() -> str:
    quote = connection.ops.quote_name
    columns = [f"k.{quote(str(f.column))}" for f in _KEY_FIELDS]
    columns += [f"t.{quote(str(f.column))}" for f in _TEAM_FIELDS]
    return (
        f"SELECT {', '.join(columns)} FROM {quote(ApiKey._meta.db_table)} AS k"  # noqa: S608
        f" JOIN {quote(Team._meta.db_table)} AS t ON t.id = k.team_id WHERE k.prefix = %s"
    )


def _from_row(model: Any, fields: Any, values: Any) -> Any:
    converted = [
        f.from_db_value(v, None, connection) if hasattr(f, "from_db_value") else v
        for f, v in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


# The bid fast path's live keys by the SHA-256 of their token: (when fetched, key with its team).
_LIVE_KEYS: dict[str, tuple[float, ApiKey]] = {}
_LIVE_KEYS_MAX = 10_000


def bearer_key(raw: str) -> ApiKey | None:
    """The live key (with its team) that `gx_<prefix>_<secret>` proves, or None when it proves
    none or the key is revoked or expired: then `ApiKeyAuthentication` says why. For the bid fast
    path (`auctions.api_fast`); PostgreSQL only (None elsewhere).

    A key found live is remembered for API_KEY_CACHE_SECONDS (per process, by the token's hash;
    tokens that prove nothing are never remembered), which spares the lookup on a bot's next
    bids. Staleness cannot let a bid through: the bid's transaction locks the key's row and checks
    it again (`marketplace.services._lock_team_for_bids`), and the fast path forgets a key it
    refuses there. A key's scopes, limits and team never change after it is created.
    """
    parts = _parse_bearer(raw)
    if parts is None or connection.vendor != "postgresql":
        return None
    digest = services.api_key_hash(raw)
    now = timezone.now()
    clock = time.monotonic()
    if (hit := _LIVE_KEYS.get(digest)) is not None and clock - hit[0] < settings.API_KEY_CACHE_SECONDS:
        known = hit[1]
        if services.api_key_refusal(known.prefix, known.revoked_at, known.expires_at, now=now) is not None:
            forget_key(raw)
            return None
        services.api_key_touch(key=known, now=now)
        return known
    with prepared_cursor() as cursor:
        cursor.execute(_key_lookup_sql(), [parts[1]])
        row = cursor.fetchone()
    if row is None:
        return None
    key: ApiKey = _from_row(ApiKey, _KEY_FIELDS, row[: len(_KEY_FIELDS)])
    if _key_refusal(key, raw, now) is not None:
        return None
    key.team = _from_row(Team, _TEAM_FIELDS, row[len(_KEY_FIELDS) :])
    services.api_key_touch(key=key, now=now)
    if settings.API_KEY_CACHE_SECONDS > 0:
        if len(_LIVE_KEYS) >= _LIVE_KEYS_MAX:
            _LIVE_KEYS.clear()  # bounded; refilled by the keys in use
        _LIVE_KEYS[digest] = (clock, key)
    return key


def forget_key(raw: str) -> None:
    """Drop the fast path's memory of a key (it was refused where it was checked again)."""
    _LIVE_KEYS.pop(services.api_key_hash(raw), None)


class KeyUser:
    """The principal of a key-authenticated request: authenticated, no session, not staff."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_active = True
    pk = None
    id = None

    def __init__(self, key: ApiKey) -> None:
        self.key = key

    def __str__(self) -> str:
        return f"API key {self.key.prefix}"


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The key scheme as drf-spectacular documents it."""

    target_class = "marketplace.api_auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "gx_<prefix>_<secret>",
            "description": "A team API key; its scopes decide what it may do.",
        }


def _session_team(request: Request) -> int | None:
    session = getattr(request._request, "session", None)
    value = session.get(SESSION_TEAM) if session is not None else None
    return value if isinstance(value, int) else None


def acting_team(request: Request) -> Team:
    """The team a request acts for: the key's, or the session user's chosen team."""
    cached = getattr(request, "_gridx_team", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    if isinstance(request.auth, ApiKey):
        team = request.auth.team
    else:
        user = request.user
        if not isinstance(user, User):
            raise exceptions.NotAuthenticated()
        slug = request.headers.get(TEAM_HEADER, "").strip()
        memberships = Membership.objects.filter(user=user).select_related("team")
        if slug:
            membership = memberships.filter(team__slug=slug).first()
            if membership is None:
                raise NotFound(f"team {slug!r} not found")
        elif (session_team := _session_team(request)) is not None:
            # The web UI's own htmx calls act for the team chosen in the header.
            membership = memberships.filter(team_id=session_team).first()
            if membership is None:
                raise NotFound("you no longer belong to the team chosen in this session")
        else:
            found = list(memberships[:2])
            if not found:
                raise NotFound("you belong to no team")
            if len(found) > 1:
                raise InvalidInput.one(
                    TEAM_HEADER,
                    "team_required",
                    f"you belong to several teams; name one in the {TEAM_HEADER} header",
                )
            membership = found[0]
        team = membership.team
        request._gridx_role = membership.role  # type: ignore[attr-defined]
    request._gridx_team = team  # type: ignore[attr-defined]
    return team


def request_scopes(request: Request) -> frozenset[str]:
    if isinstance(request.auth, ApiKey):
        return frozenset(request.auth.scopes)
    acting_team(request)
    return ROLE_SCOPES.get(getattr(request, "_gridx_role", ""), frozenset())


def request_key(request: Request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


def request_actor(request: Request) -> User | None:
    """The user whose role the services check; None for a key, whose scopes were checked here."""
    return request.user if isinstance(request.user, User) else None


def HasScope(scope: str) -> type[permissions.BasePermission]:  # noqa: N802 - reads as a class
    """A permission class allowing an authenticated caller holding `scope` for its team."""

    class _HasScope(permissions.BasePermission):
        def has_permission(self, request: Request, view: Any) -> bool:
            if not (request.user and request.user.is_authenticated):
                raise exceptions.NotAuthenticated()
            if scope not in request_scopes(request):
                how = (
                    "this API key lacks"
                    if isinstance(request.auth, ApiKey)
                    else "your role in the team lacks"
                )
                raise exceptions.PermissionDenied(f"{how} the scope {scope!r}", code="missing_scope")
            return True

    _HasScope.__name__ = _HasScope.__qualname__ = f"HasScope[{scope}]"
    return _HasScope


class KeyRateThrottle(throttling.BaseThrottle):
    """Fixed one-minute windows per API key (or per session user, or per address) in the cache.

    The counter lives in Redis in production, so every web process shares it.
    """

    def __init__(self) -> None:
        self._wait = 0.0

    def _identity(self, request: Request) -> tuple[str, int]:
        limit = int(settings.API_RATE_LIMIT_PER_MINUTE)
        if isinstance(request.auth, ApiKey):
            return key_rate_limit(request.auth)
        if isinstance(request.user, User):
            return f"user:{request.user.pk}", limit
        return f"addr:{request.META.get('REMOTE_ADDR', '')}", max(limit // 4, 1)

    def allow_request(self, request: Request, view: Any) -> bool:
        wait = rate_limit_wait(*self._identity(request))
        if wait is not None:
            self._wait = wait
            return False
        return True

    def wait(self) -> float:
        return max(self._wait, 1.0)


def rate_limit_wait(identity: str, limit: int) -> float | None:
    """Count a request against `identity`'s one-minute window: None when allowed, else the seconds
    until the next window (the view answers 429 with at least 1 s of Retry-After)."""
    now = time.time()
    window = int(now // 60)
    if _count_hit(f"gridx:rl:{identity}:{window}") > limit:
        return (window + 1) * 60 - now
    return None


def key_rate_limit(key: ApiKey) -> tuple[str, int]:
    """The rate-limit identity and per-minute limit of an API key."""
    return f"key:{key.pk}", key.rate_limit_per_minute or int(settings.API_RATE_LIMIT_PER_MINUTE)


_REDIS: list[Any] = []


def _redis_client() -> Any | None:
    """One Redis client per process for the counters, or None when the cache is not Redis.

    Django's Redis cache builds a new client (and its table of ~170 reply handlers) for every
    operation, and its `incr` is two round trips; counting a hit that way cost about 1 ms a request.
    The client is thread-safe: it takes a connection from the cache's pool for each command.
    """
    if not _REDIS:
        backend = caches[DEFAULT_CACHE_ALIAS]
        _REDIS.append(
            backend._cache.get_client(None, write=True) if isinstance(backend, RedisCache) else None
        )
    return _REDIS[0]


_COUNT_HIT_LUA = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def _count_hit(key: str) -> int:
    """Add one to a window's counter and return it; the counter lives two windows at most."""
    client = _redis_client()
    if client is not None:
        if len(_REDIS) == 1:
            _REDIS.append(client.register_script(_COUNT_HIT_LUA))
        # One EVALSHA: the increment and the expiry in one command (a pipeline of INCR and
        # EXPIRE cost twice the client's work), atomic, so no counter is left without its expiry.
        return int(_REDIS[1](keys=[cache.make_key(key)], args=[120]))  # the cache's own key
    cache.add(key, 0, timeout=120)
    try:
        return int(cache.incr(key))
    except ValueError:  # evicted between add and incr: start the window again
        cache.set(key, 1, timeout=120)
        return 1


def expires_in(days: int | None) -> dt.datetime | None:
    return None if days is None else timezone.now() + dt.timedelta(days=days)
