"""The API's page style.

Kept apart from lightsource.api: importing DRF's pagination loads DRF's
settings, which import lightsource.api back.
"""

from rest_framework.pagination import LimitOffsetPagination

MAX_PAGE_SIZE = 200


class Pagination(LimitOffsetPagination):
    """Page style of `?limit=&offset=`; a larger limit is cut to MAX_PAGE_SIZE."""

    max_limit = MAX_PAGE_SIZE
