"""Database helpers that the ORM's public API lacks."""

from django.db.models import QuerySet


def update_returning(queryset: QuerySet, returning: list[str], **values) -> list:
    """Run `queryset.update(**values)` and return a row of `returning` per changed row.

    One `UPDATE ... RETURNING` replaces an update followed by a read, so the
    caller learns which rows changed in one round trip. Like `update()`, it
    sends no signals and leaves `auto_now` fields alone.
    """
    meta = queryset.model._meta
    fields = [(meta.get_field(name), None, value) for name, value in values.items()]
    returning_fields = [
        meta.pk if name == "pk" else meta.get_field(name) for name in returning
    ]
    # NOTE: QuerySet._update is private. Django 6.1's Model.save() calls it the
    # same way. On a backend without UPDATE ... RETURNING (SQLite before 3.35)
    # it returns an empty tuple per changed row.
    return queryset._update(fields, returning_fields=returning_fields)
