"""Billing fixtures: ledger accounts of two teams and the platform."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from billing.ledger import platform_account, team_account
from billing.models import Account, AccountKind
from tests.factories import TeamFactory


@dataclass
class Books:
    buyer: Account
    seller: Account
    fees: Account
    clearing: Account
    credits: Account


@pytest.fixture
def books(db) -> Books:
    """A buyer's receivable, a seller's payable and the platform's accounts, all in USD."""
    buyer, seller = TeamFactory(), TeamFactory()
    return Books(
        buyer=team_account(team=buyer, kind=AccountKind.RECEIVABLE, currency="usd"),
        seller=team_account(team=seller, kind=AccountKind.PAYABLE, currency="usd"),
        fees=platform_account(kind=AccountKind.FEES, currency="usd"),
        clearing=platform_account(kind=AccountKind.CLEARING, currency="usd"),
        credits=platform_account(kind=AccountKind.CREDITS, currency="usd"),
    )
