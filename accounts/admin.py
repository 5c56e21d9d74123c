from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import User, UserPreference


class PreferenceInline(admin.StackedInline):
    model = UserPreference
    can_delete = False


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    inlines = [PreferenceInline]
    list_display = [
        "username",
        "email",
        "is_staff",
        "is_active",
        "date_joined",
        "last_login",
    ]


@admin.register(UserPreference)
class UserPreferenceAdmin(admin.ModelAdmin):
    list_display = ["user", "theme", "language", "notifications", "default_model"]
    list_filter = ["theme", "language", "notifications"]
    search_fields = ["user__username"]
