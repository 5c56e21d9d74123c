"""Conversion between minor-unit integers and the decimals people read."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MINOR_PER_MAJOR = 100


def parse_amount(value: str | int | float | Decimal) -> int:
    """Convert a major-unit amount such as "12.50" to minor units (1250).

    Raises ValueError for a value that is not a number or has sub-cent digits.
    """
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not an amount")

    minor = amount * MINOR_PER_MAJOR
    if minor != minor.to_integral_value():
        raise ValueError(f"{value!r} has more than two decimal places")
    return int(minor)


def format_amount(minor: int) -> Decimal:
    return (Decimal(minor) / MINOR_PER_MAJOR).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
