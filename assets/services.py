"""Ingest generated files: check, store content-addressed, thumbnail, record."""

import hashlib
import logging

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from assets.media import MediaInfo, make_poster, make_thumbnail, probe
from assets.models import Asset, Blob, blob_path

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
    if info.kind == "image":
        preview = make_thumbnail(content)
    else:
        preview = make_poster(content)
    return info, preview


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
