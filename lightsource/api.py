"""API conventions shared by every app: error bodies and rate limits."""

from django.conf import settings
from django.utils.decorators import method_decorator
from django_ratelimit.decorators import ratelimit
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """Render errors as field -> [{message, code}] or {detail, code}."""
    if isinstance(exc, Ratelimited):
        exc = exceptions.Throttled(detail="Too many requests; slow down and retry.")

    response = drf_exception_handler(exc, context)
    if response is None:
        return None

    if isinstance(exc, exceptions.ValidationError):
        response.data = exc.get_full_details()
    elif isinstance(exc, exceptions.APIException):
        detail = exc.get_full_details()
        if isinstance(detail, dict) and "message" in detail:
            response.data = {"detail": detail["message"], "code": detail["code"]}
    return response


class ApiError(exceptions.APIException):
    """An error with an explicit status and code, rendered as {detail, code}."""

    def __init__(self, detail: str, code: str, status_code: int = 400) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code


def rate_limited(group: str, key: str = "user_or_ip"):
    """Limit a view method per user (or IP) to RATE_LIMIT_PER_MINUTE and BURST_LIMIT.

    Decorates handler methods such as `post`, where DRF has already
    authenticated the request, so JWT and API-key users count per user.
    """
    per_minute = ratelimit(
        group=f"{group}:minute",
        key=key,
        rate=f"{settings.RATE_LIMIT_PER_MINUTE}/m",
        block=True,
    )
    burst = ratelimit(
        group=f"{group}:burst", key=key, rate=f"{settings.BURST_LIMIT}/10s", block=True
    )

    def decorate(method):
        return method_decorator(per_minute)(method_decorator(burst)(method))

    return decorate
