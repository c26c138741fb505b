"""Integer-cent arithmetic for billing: the one rounding rule and exact splits.

The rounding rule (docs/billing.md): an amount is computed as an exact fraction of cents and
rounded once, half away from zero, to whole cents. Nothing is rounded twice.
"""

from __future__ import annotations


def round_half_away(numerator: int, denominator: int) -> int:
    """Round numerator/denominator to the nearest integer, halves away from zero (exact, no floats)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    whole, rest = divmod(abs(numerator), denominator)
    if 2 * rest >= denominator:
        whole += 1
    return sign * whole


def basis_points(amount_cents: int, bps: int) -> int:
    """`bps`/10000 of an amount, rounded by the one rule."""
    return round_half_away(amount_cents * bps, 10_000)


def split_by_weights(total: int, weights: list[int]) -> list[int]:
    """Split integer cents by weights, largest remainder first (ties to the earlier): sums exactly.

    Negative totals split as the negation of the split of their absolute value, so a reversing
    amount mirrors the original share for share.
    """
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    if total < 0:
        return [-s for s in split_by_weights(-total, weights)]
    whole = sum(weights)
    if whole == 0:
        if total and weights:
            # No weights to go by: share equally.
            return split_by_weights(total, [1] * len(weights))
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    rest = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[:rest]:
        shares[i] += 1
    return shares
