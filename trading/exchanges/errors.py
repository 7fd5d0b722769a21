"""Every exchange failure maps to one of these; `retryable` says whether trying again can help."""


class ExchangeError(Exception):
    retryable = False

    def __init__(self, message: str, *, exchange: str = "", status: int | None = None, code=None):
        super().__init__(message)
        self.exchange, self.status, self.code = exchange, status, code


class AuthError(ExchangeError):
    """Unknown key, bad signature, reused nonce, or a clock outside the receive window."""


class InvalidOrder(ExchangeError):
    """The exchange's rules refuse the order (tick, lot, minimum, unknown market...)."""


class InsufficientFunds(ExchangeError):
    pass


class DuplicateClientOrderId(InvalidOrder):
    """The client id is taken. Not an idempotent replay on either exchange: look the order up."""


class OrderNotFound(ExchangeError):
    pass


class RateLimited(ExchangeError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class UnknownOutcome(ExchangeError):
    """A timeout or 5xx: the request may or may not have taken effect. Look it up before anything else."""

    retryable = True
