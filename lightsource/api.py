"""API conventions shared by every app: error bodies and rate limits."""

import functools

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.utils.translation import gettext, gettext_noop
from django_ratelimit.core import get_usage
from django_ratelimit.decorators import ratelimit
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, parsers
from rest_framework.views import exception_handler as drf_exception_handler

# Marked for translation where it is used; gettext_noop keeps it in the catalog.
TOO_MANY_REQUESTS = gettext_noop("Too many requests; slow down and retry.")


def exception_handler(exc, context):
    """Render errors as field -> [{message, code}] or {detail, code}."""
    if isinstance(exc, Ratelimited):
        exc = exceptions.Throttled(detail=gettext(TOO_MANY_REQUESTS))
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

    Decorates `post` handler methods, where DRF has already
    authenticated the request, so JWT and API-key users count per user. A
    blocked request gets 429 with Retry-After, the seconds until its window ends.
    """
    # The rates are callables, so they are read from settings on each request
    # and not frozen when the view module is imported.
    limits = ((f"{group}:minute", per_minute_rate), (f"{group}:burst", burst_rate))

    def decorate(method):
        @functools.wraps(method)
        def limited(view, request, *args, **kwargs):
            for limit_group, rate in limits:
                # Counted as POSTs, like rate_limited_page, so a page and its
                # API endpoint share one cache key and so one budget.
                usage = get_usage(
                    request,
                    group=limit_group,
                    key=key,
                    rate=rate,
                    method="POST",
                    increment=True,
                )
                if usage is not None and usage["should_limit"]:
                    # The window may end this very second; a client should
                    # still wait at least one.
                    wait = max(usage["time_left"], 1)
                    detail = gettext(TOO_MANY_REQUESTS)
                    raise exceptions.Throttled(wait=wait, detail=detail)
            return method(view, request, *args, **kwargs)

        return limited

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
