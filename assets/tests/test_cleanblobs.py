"""`manage.py cleanblobs`: stored files that no Blob row records."""

import os
import time
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from assets.services import record_blob, write_file

pytestmark = pytest.mark.django_db

TWO_DAYS = 2 * 24 * 3600


def stored(content: bytes, age_seconds: float = 0):
    """Write `content` as a blob file, `age_seconds` old, and return its StoredFile."""
    file = write_file(content, "image/png", ".png")
    if age_seconds:
        then = time.time() - age_seconds
        os.utime(path_of(file.name), (then, then))
    return file


def path_of(name: str) -> Path:
    return Path(settings.MEDIA_ROOT, name)


def clean(*options: str) -> str:
    out = StringIO()
    call_command("cleanblobs", *options, stdout=out)
    return out.getvalue()


def test_old_unrecorded_file_deleted():
    orphan = stored(b"orphan", age_seconds=TWO_DAYS)

    output = clean()

    assert not path_of(orphan.name).exists()
    assert orphan.name in output
    assert "deleted 1 unrecorded files, 6 bytes" in output


def test_recorded_file_kept():
    recorded = stored(b"recorded", age_seconds=TWO_DAYS)
    record_blob(recorded)

    output = clean()

    assert path_of(recorded.name).exists()
    assert "deleted 0 unrecorded files" in output


def test_recent_unrecorded_file_kept():
    recent = stored(b"being recorded")

    clean()

    assert path_of(recent.name).exists()


def test_min_age_option():
    orphan = stored(b"three hours old", age_seconds=3 * 3600)

    clean("--min-age-hours", "4")
    assert path_of(orphan.name).exists()

    clean("--min-age-hours", "2")
    assert not path_of(orphan.name).exists()


def test_dry_run_deletes_nothing():
    orphan = stored(b"orphan", age_seconds=TWO_DAYS)

    output = clean("--dry-run")

    assert path_of(orphan.name).exists()
    assert "would delete 1 unrecorded files" in output


def test_rewritten_file_counts_as_recent():
    # Identical content written again is about to be recorded, so it is kept.
    orphan = stored(b"same bytes", age_seconds=TWO_DAYS)
    stored(b"same bytes")

    clean()

    assert path_of(orphan.name).exists()


def test_short_min_age_rejected():
    with pytest.raises(CommandError, match="at least 1"):
        clean("--min-age-hours", "0.1")


def test_empty_storage():
    assert "deleted 0 unrecorded files, 0 bytes" in clean()
