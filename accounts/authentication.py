"""DRF authentication that also activates the authenticated user's language."""

from rest_framework import authentication
from rest_framework_simplejwt import authentication as jwt_authentication

from accounts.language import activate_preferred_language


class PreferredLanguageMixin:
    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            activate_preferred_language(request, result[0])
        return result


class JWTAuthentication(PreferredLanguageMixin, jwt_authentication.JWTAuthentication):
    pass


class SessionAuthentication(
    PreferredLanguageMixin, authentication.SessionAuthentication
):
    pass
