"""Models of the auctions app (filled in by its issue)."""
