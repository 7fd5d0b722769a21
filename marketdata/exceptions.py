class MarketDataError(Exception):
    """Base of market-data errors."""


class FeedMessageError(MarketDataError):
    """A feed message could not be used; the reason says why. The worker counts it and goes on."""

    def __init__(self, reason: str, kind: str = "malformed"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class BookGapError(MarketDataError):
    """A diff-depth event does not follow the book's last update id: the book must be resynced."""


class DiscoveryError(MarketDataError):
    """The list of markets could not be read from an exchange."""
