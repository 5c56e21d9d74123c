from django.contrib import admin

from providers.models import ModelSpec, Provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "base_url", "api_key_env", "enabled", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]


@admin.register(ModelSpec)
class ModelSpecAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "provider", "remote_name", "price", "enabled", "sort_order"]
    list_filter = ["kind", "enabled", "provider"]
    search_fields = ["name", "label", "remote_name"]
    list_select_related = ["provider"]
