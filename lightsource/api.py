"""API conventions shared by every app: error bodies and rate limits."""

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.utils.decorators import method_decorator
from django.utils.translation import gettext
from django_ratelimit.decorators import ratelimit
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, parsers
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """Render errors as field -> [{message, code}] or {detail, code}."""
    if isinstance(exc, Ratelimited):
        exc = exceptions.Throttled(
            detail=gettext("Too many requests; slow down and retry.")
        )
    # DRF's handler converts Django's 404 and 403 only for its own use, so they
    # are converted here too, or their body would lack a code.
    elif isinstance(exc, Http404):
        # Django's own 404 text ("No Job matches the given query.") is not
        # translated, and DRF's is.
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)

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


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a translated parse error, and a 400 for JSON
    nested too deeply for json.loads."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(
                gettext("JSON parse error - the document is nested too deeply.")
            ) from None
        except exceptions.ParseError as error:
            # DRF does not translate this message; the detail from json.loads
            # stays as it is.
            detail = str(error.detail).removeprefix("JSON parse error - ")
            message = gettext("JSON parse error - %(detail)s") % {"detail": detail}
            raise exceptions.ParseError(message) from None


class ApiError(exceptions.APIException):
    """An error with an explicit status and code, rendered as {detail, code}."""

    def __init__(self, detail: str, code: str, status_code: int = 400) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code


def per_minute_rate(group: str, request: HttpRequest) -> str:
    return f"{settings.RATE_LIMIT_PER_MINUTE}/m"


def burst_rate(group: str, request: HttpRequest) -> str:
    return f"{settings.BURST_LIMIT}/10s"


def rate_limited(group: str, key: str = "user_or_ip"):
    """Limit a view method per user (or IP) to RATE_LIMIT_PER_MINUTE and BURST_LIMIT.

    Decorates handler methods such as `post`, where DRF has already
    authenticated the request, so JWT and API-key users count per user.
    """
    # The rates are callables, so they are read from settings on each request
    # and not frozen when the view module is imported.
    per_minute = ratelimit(
        group=f"{group}:minute", key=key, rate=per_minute_rate, block=True
    )
    burst = ratelimit(group=f"{group}:burst", key=key, rate=burst_rate, block=True)

    def decorate(method):
        return method_decorator(per_minute)(method_decorator(burst)(method))

    return decorate


def rate_limited_page(group: str, key: str = "user_or_ip"):
    """Limit the POSTs of a page view with the counters of the API's `group`.

    The log-in and sign-up forms and the generator page then share one budget
    with their API endpoints. Blocked requests get the 429 page through
    django_ratelimit's middleware.
    """
    per_minute = ratelimit(
        group=f"{group}:minute",
        key=key,
        rate=per_minute_rate,
        method="POST",
        block=True,
    )
    burst = ratelimit(
        group=f"{group}:burst", key=key, rate=burst_rate, method="POST", block=True
    )

    def decorate(view):
        return per_minute(burst(view))

    return decorate
