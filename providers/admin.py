from django import forms
from django.contrib import admin, messages

from providers.connection import check_connection
from providers.models import ModelSpec, Provider


def mask_key(key: str) -> str:
    if not key:
        return "(none saved)"
    return f"…{key[-4:]}" if len(key) > 8 else "…"


class ProviderForm(forms.ModelForm):
    """Takes a new API key without ever showing the saved one."""

    new_api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        label="New API key",
        help_text="Leave blank to keep the saved key. A variable named in "
        "'API key env' takes precedence when it is set.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the saved key")

    class Meta:
        model = Provider
        fields = ["name", "kind", "base_url", "api_key_env", "enabled"]

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            provider.api_key = ""
        elif new_key := self.cleaned_data.get("new_api_key", "").strip():
            provider.api_key = new_key
        if commit:
            provider.save()
        return provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = [
        "name",
        "kind",
        "base_url",
        "api_key_env",
        "saved_key",
        "enabled",
        "updated_at",
    ]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["saved_key"]
    actions = ["test_connection"]

    @admin.display(description="Saved key")
    def saved_key(self, provider: Provider) -> str:
        return mask_key(provider.api_key)

    @admin.action(description="Test the connection (lists models, generates nothing)")
    def test_connection(self, request, queryset) -> None:
        for provider in queryset:
            result = check_connection(provider)
            level = messages.SUCCESS if result.ok else messages.ERROR
            self.message_user(request, f"{provider.name}: {result.message}", level)


@admin.register(ModelSpec)
class ModelSpecAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "provider",
        "remote_name",
        "price",
        "enabled",
        "sort_order",
    ]
    list_filter = ["kind", "enabled", "provider"]
    search_fields = ["name", "label", "remote_name"]
    list_select_related = ["provider"]
