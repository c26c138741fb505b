"""One flat transaction per request, without a savepoint for every nested service.

A service decorated with `@step` opens a transaction when called alone and a savepoint when called
inside a plain atomic block, as `@transaction.atomic` does, so a caller (a test, a web view) can
catch its DomainError and go on using the database. Inside another `@step` service or inside
`request_transaction()` it opens no savepoint and joins the transaction: an exception leaving it
also leaves the enclosing block, which rolls everything back, so a savepoint would only cost two
round trips (SAVEPOINT, RELEASE) per nested service.

The rule that keeps this correct: code inside a `@step` service or a `request_transaction()` block
never catches a nested `@step` service's exception and carries on using the database.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from django.db import transaction

P = ParamSpec("P")
R = TypeVar("R")

_FLAT: ContextVar[bool] = ContextVar("gridx_flat_transaction", default=False)


@contextmanager
def request_transaction() -> Iterator[None]:
    """One transaction for a whole request (a savepoint inside a plain atomic block); the `@step`
    services called inside it join it."""
    with transaction.atomic(savepoint=not _FLAT.get()):
        token = _FLAT.set(True)
        try:
            yield
        finally:
            _FLAT.reset(token)


def step(func: Callable[P, R]) -> Callable[P, R]:
    """`@transaction.atomic`, except that inside another step it joins that step's transaction."""

    @functools.wraps(func)
    def inner(*args: P.args, **kwargs: P.kwargs) -> R:
        with request_transaction():
            return func(*args, **kwargs)

    return inner
