from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def health(request: HttpRequest) -> JsonResponse:
    """Return 200 when a query on the database succeeds, else 503."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


def rate_limited(request: HttpRequest, exception: Exception) -> HttpResponse:
    return render(request, "rate_limited.html", status=429)


def api_not_found(request: HttpRequest) -> JsonResponse:
    """Return unknown /api paths as a JSON 404 in the API's error shape."""
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
