from django.conf import settings

from billing.models import Wallet
from billing.money import format_amount


def wallet(request) -> dict:
    """Add the signed-in user's balance, shown in every page's header."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    balance = Wallet.objects.filter(user=user).values_list("balance", flat=True).first()
    return {"balance": format_amount(balance or 0), "currency": settings.CURRENCY}
