"""A local Stripe stand-in for tests and the demo; never on the production path (docs/billing.md)."""

from .server import StandIn

__all__ = ["StandIn"]
