from django.contrib import admin

from assets.models import Asset, Blob


@admin.register(Asset)
class AssetAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "owner",
        "kind",
        "mime_type",
        "width",
        "height",
        "size_bytes",
        "created_at",
    ]
    list_filter = ["kind", "mime_type"]
    search_fields = ["id", "owner__username", "prompt", "blob__sha256"]
    list_select_related = ["owner"]
    raw_id_fields = ["blob", "thumbnail", "source_job", "owner"]


@admin.register(Blob)
class BlobAdmin(admin.ModelAdmin):
    list_display = ["sha256", "mime_type", "size_bytes", "created_at"]
    list_filter = ["mime_type"]
    search_fields = ["sha256"]
