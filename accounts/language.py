"""The language of a signed-in user: their preference overrides Accept-Language."""

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.utils import translation


def preferred_language(user) -> str:
    """Return the language code `user` chose, or LANGUAGE_CODE if none."""
    if not getattr(user, "is_authenticated", False):
        return settings.LANGUAGE_CODE
    try:
        return user.preference.language
    except ObjectDoesNotExist:
        # Users made by createsuperuser or in admin may have no preference row.
        return settings.LANGUAGE_CODE


def activate_preferred_language(request, user) -> None:
    """Activate `user`'s language for the rest of `request`."""
    language = preferred_language(user)
    translation.activate(language)
    request.LANGUAGE_CODE = translation.get_language()


class PreferredLanguageMiddleware:
    """Activate a session user's preferred language on pages.

    Runs after LocaleMiddleware and AuthenticationMiddleware. API requests are
    left to the DRF authentication classes in accounts.authentication, because
    JWT users are known only once DRF has authenticated them.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/") and request.user.is_authenticated:
            activate_preferred_language(request, request.user)
        return self.get_response(request)
