"""Short-lived signed links to private media, so <img> and <video> tags work."""

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "lightsource.assets.media"


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=SALT)


def signed_path(asset_id, variant: str) -> str:
    """Return the media path of an asset with a token only valid for it."""
    value = f"{asset_id}:{variant}"
    token = _signer().sign(value).removeprefix(f"{value}:")
    path = reverse("assets:media", kwargs={"pk": asset_id, "variant": variant})
    return f"{path}?token={token}"


def token_is_valid(asset_id, variant: str, token: str) -> bool:
    """Check a token from signed_path against this asset, variant and its age."""
    try:
        _signer().unsign(
            f"{asset_id}:{variant}:{token}", max_age=settings.MEDIA_LINK_SECONDS
        )
    except signing.BadSignature:
        return False
    return True


def absolute_url(request, asset_id, variant: str) -> str:
    path = signed_path(asset_id, variant)
    return request.build_absolute_uri(path) if request is not None else path
