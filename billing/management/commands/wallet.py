from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from billing.money import format_amount, parse_amount
from billing.services import topup, wallet_for

# One top-up stays far below the database's bigint limit, so typos fail here.
MAX_TOPUP = 10**12


class Command(BaseCommand):
    help = "Show or credit a user's wallet. Amounts are in the major unit, e.g. 12.50."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        credit = actions.add_parser("topup", help="Credit a wallet.")
        credit.add_argument("username")
        credit.add_argument("amount", help="Amount in the major unit, e.g. 12.50.")
        credit.add_argument("--reason", required=True, help="Why, for the ledger.")
        show = actions.add_parser("show", help="Print a wallet's balance.")
        show.add_argument("username")

    def handle(self, *args, action: str, username: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")

        if action == "topup":
            self._topup(user, options["amount"], options["reason"])
        balance = format_amount(wallet_for(user).balance)
        self.stdout.write(f"{username}: balance {balance} {settings.CURRENCY}")

    def _topup(self, user, raw_amount: str, reason: str) -> None:
        try:
            amount = parse_amount(raw_amount)
        except ValueError as error:
            raise CommandError(f"Invalid amount: {error}.") from None
        if amount <= 0:
            raise CommandError("The amount must be positive.")
        if amount > MAX_TOPUP:
            raise CommandError(
                f"The amount is above the limit of {format_amount(MAX_TOPUP)}."
            )
        if not reason.strip():
            raise CommandError("Give a --reason for the ledger.")
        topup(user, amount, reason.strip())
