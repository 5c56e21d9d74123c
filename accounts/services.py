import logging

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.db import transaction

from accounts.models import UserPreference
from billing.services import wallet_for

logger = logging.getLogger(__name__)


@transaction.atomic
def register_user(
    username: str, email: str, password: str, language: str | None = None
):
    """Create a user with preferences and an empty wallet.

    `language` is the preferred language, LANGUAGE_CODE when missing or not in
    LANGUAGES. Raises django.core.exceptions.ValidationError for a weak password.
    """
    User = get_user_model()
    user = User(username=username, email=email)
    password_validation.validate_password(password, user)
    user.set_password(password)
    user.save()
    if language not in dict(settings.LANGUAGES):
        language = settings.LANGUAGE_CODE
    UserPreference.objects.create(user=user, language=language)
    wallet_for(user)
    logger.info("user registered user=%s", user.pk)
    return user
