"""Exceptions raised by the simulated hardware."""


class InvalidRequestError(ValueError):
    """A request the simulated hardware refuses (bad index, shape, dtype, NaN, ...).

    Raised before any state is changed.
    """


class SafetyLimitError(InvalidRequestError):
    """A programming pulse or read voltage outside the chip's safe operating limits."""
