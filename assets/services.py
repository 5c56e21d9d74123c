"""Ingest generated files: check, store content-addressed, thumbnail, record."""

import hashlib
import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from assets.media import InvalidMedia, MediaInfo, make_poster, make_thumbnail, probe
from assets.models import Asset, Blob, blob_path
from providers.adapters.base import ReferenceImage
from providers.errors import ProviderError

logger = logging.getLogger(__name__)


def store_blob(content: bytes, mime_type: str, extension: str) -> Blob:
    """Write `content` once under its sha256 and return its Blob row."""
    digest = hashlib.sha256(content).hexdigest()
    blob = Blob(sha256=digest, size_bytes=len(content), mime_type=mime_type)
    blob.extension = extension
    name = blob_path(blob, "")
    if not default_storage.exists(name):
        default_storage.save(name, ContentFile(content))

    blob, _ = Blob.objects.get_or_create(
        sha256=digest,
        defaults={
            "file": name,
            "size_bytes": len(content),
            "mime_type": mime_type,
            "extension": extension,
        },
    )
    return blob


def prepare_file(content: bytes, declared_mime: str | None = None):
    """Decode `content` and build its preview. Raises InvalidMedia.

    Runs before any transaction, so slow decoding holds no lock.
    """
    info = probe(content, declared_mime)
    make_preview = make_thumbnail if info.kind == "image" else make_poster
    return info, make_preview(content)


def create_asset(owner, content: bytes, info: MediaInfo, preview: bytes, **fields):
    """Store a checked file and its preview and record them as an Asset."""
    blob = store_blob(content, info.mime_type, info.extension)
    thumbnail = store_blob(preview, "image/webp", ".webp")
    return Asset.objects.create(
        owner=owner,
        kind=info.kind,
        blob=blob,
        thumbnail=thumbnail,
        mime_type=info.mime_type,
        size_bytes=len(content),
        width=info.width,
        height=info.height,
        duration=info.duration,
        **fields,
    )


def delete_unused_blobs(digests: set[str]) -> None:
    """Delete the blobs among `digests` that no asset uses any more."""
    for digest in digests:
        with transaction.atomic():
            blob = Blob.objects.select_for_update().filter(pk=digest).first()
            if blob is None or blob.assets.exists() or blob.thumbnail_of.exists():
                continue
            name = blob.file.name
            blob.delete()
        default_storage.delete(name)
        logger.info("blob deleted sha256=%s", digest)


def load_reference(job) -> ReferenceImage | None:
    """Return the job's reference image from the owner's library, if it has one."""
    asset_id = job.params.get("reference_asset")
    if not asset_id:
        return None

    asset = (
        Asset.objects.select_related("blob")
        .filter(owner=job.owner_id, pk=asset_id, kind=Asset.Kind.IMAGE)
        .first()
    )
    if asset is None:
        raise ProviderError(
            "invalid_request", "The reference image is no longer in your library."
        )
    with asset.blob.file.open("rb") as handle:
        content = handle.read()
    return ReferenceImage(content, asset.mime_type, asset.width, asset.height)


def upload_image(owner, uploaded) -> Asset:
    """Store an uploaded image in the owner's library, as an asset without a job.

    Raises InvalidMedia for a file that is too large or is not an image.
    """
    limit = settings.MAX_UPLOAD_BYTES
    if uploaded.size > limit:
        raise InvalidMedia(f"The file is larger than {limit // (1024 * 1024)} MiB.")

    content = uploaded.read()
    info, preview = prepare_file(content, getattr(uploaded, "content_type", None))
    if info.kind != "image":
        raise InvalidMedia("Upload an image (PNG, JPEG, WebP or GIF).")
    asset = create_asset(owner, content, info, preview, params={"source": "upload"})
    logger.info(
        "asset uploaded asset=%s user=%s bytes=%d", asset.pk, owner.pk, len(content)
    )
    return asset
