"""Ingest generated files: check, store content-addressed, thumbnail, record."""

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from assets.media import InvalidMedia, MediaInfo, make_poster, make_thumbnail, probe
from assets.models import BLOB_DIR, Asset, Blob, blob_path
from providers.adapters.base import ReferenceImage
from providers.errors import ProviderError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredFile:
    """A file written to storage under its sha256, not yet recorded as a Blob."""

    sha256: str
    name: str
    size_bytes: int
    mime_type: str
    extension: str


@dataclass(frozen=True)
class PreparedMedia:
    """A checked file and its preview, both written to storage."""

    info: MediaInfo
    file: StoredFile
    preview: StoredFile


def write_file(content: bytes, mime_type: str, extension: str) -> StoredFile:
    """Write `content` once under its sha256. Touches storage, not the database."""
    digest = hashlib.sha256(content).hexdigest()
    name = blob_path(Blob(sha256=digest, extension=extension), "")
    if default_storage.exists(name):
        _mark_used(name)
    else:
        default_storage.save(name, ContentFile(content))
    return StoredFile(digest, name, len(content), mime_type, extension)


def _mark_used(name: str) -> None:
    # A file about to be recorded again gets a fresh modification time, so
    # unrecorded_files does not take it for an old leftover meanwhile.
    try:
        path = default_storage.path(name)
    except NotImplementedError:
        return
    try:
        os.utime(path)
    except OSError as error:
        logger.warning("could not touch stored file %s: %s", name, error)


def unrecorded_files(min_age: timedelta) -> Iterator[tuple[str, int]]:
    """Yield (name, size) of blob files older than `min_age` that no Blob records.

    Such files are left when a job's worker loses the job after writing its
    results, or dies before recording them.
    """
    cutoff = timezone.now() - min_age
    for name in _blob_files():
        digest = PurePosixPath(name).stem
        if default_storage.get_modified_time(name) > cutoff:
            continue
        if Blob.objects.filter(pk=digest).exists():
            continue
        yield name, default_storage.size(name)


def _blob_files() -> Iterator[str]:
    if not default_storage.exists(BLOB_DIR):
        return
    first_levels, _ = default_storage.listdir(BLOB_DIR)
    for first in sorted(first_levels):
        second_levels, _ = default_storage.listdir(f"{BLOB_DIR}/{first}")
        for second in sorted(second_levels):
            folder = f"{BLOB_DIR}/{first}/{second}"
            _, files = default_storage.listdir(folder)
            for file_name in sorted(files):
                yield f"{folder}/{file_name}"


def record_blob(stored: StoredFile) -> Blob:
    blob, _ = Blob.objects.get_or_create(
        sha256=stored.sha256,
        defaults={
            "file": stored.name,
            "size_bytes": stored.size_bytes,
            "mime_type": stored.mime_type,
            "extension": stored.extension,
        },
    )
    return blob


def store_blob(content: bytes, mime_type: str, extension: str) -> Blob:
    """Write `content` once under its sha256 and return its Blob row."""
    return record_blob(write_file(content, mime_type, extension))


def prepare_file(
    content: bytes,
    declared_mime: str | None = None,
    kinds: tuple[str, ...] = ("image", "video"),
):
    """Decode `content` as one of `kinds` and build its preview. Raises InvalidMedia.

    Runs before any transaction, so slow decoding holds no lock.
    """
    info = probe(content, declared_mime, kinds)
    make_preview = make_thumbnail if info.kind == "image" else make_poster
    return info, make_preview(content)


def prepare_media(content: bytes, declared_mime: str | None = None) -> PreparedMedia:
    """Check a file, build its preview and write both to storage. Raises InvalidMedia.

    Uses no database connection, so worker job threads may call it.
    """
    info, preview = prepare_file(content, declared_mime)
    return _write_media(content, info, preview)


def _write_media(content: bytes, info: MediaInfo, preview: bytes) -> PreparedMedia:
    return PreparedMedia(
        info,
        write_file(content, info.mime_type, info.extension),
        write_file(preview, "image/webp", ".webp"),
    )


def record_asset(owner, prepared: PreparedMedia, **fields) -> Asset:
    """Record prepared media as an Asset in the owner's library."""
    info = prepared.info
    return Asset.objects.create(
        owner=owner,
        kind=info.kind,
        blob=record_blob(prepared.file),
        thumbnail=record_blob(prepared.preview),
        mime_type=info.mime_type,
        size_bytes=prepared.file.size_bytes,
        width=info.width,
        height=info.height,
        duration=info.duration,
        **fields,
    )


def create_asset(owner, content: bytes, info: MediaInfo, preview: bytes, **fields):
    """Store a checked file and its preview and record them as an Asset."""
    return record_asset(owner, _write_media(content, info, preview), **fields)


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
            "invalid_request",
            gettext("The reference image is no longer in your library."),
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
        raise InvalidMedia(
            gettext("The file is larger than %(limit)s MiB.")
            % {"limit": limit // (1024 * 1024)}
        )

    content = uploaded.read()
    try:
        info, preview = prepare_file(content, None, kinds=("image",))
    except InvalidMedia:
        raise InvalidMedia(
            gettext("Upload an image (PNG, JPEG, WebP or GIF).")
        ) from None
    asset = create_asset(owner, content, info, preview, params={"source": "upload"})
    logger.info(
        "asset uploaded asset=%s user=%s bytes=%d", asset.pk, owner.pk, len(content)
    )
    return asset
