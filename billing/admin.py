from django.contrib import admin

from billing.models import Hold, LedgerEntry, Wallet


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ["user", "balance", "updated_at"]
    search_fields = ["user__username", "user__email"]
    readonly_fields = ["balance"]
    list_select_related = ["user"]


@admin.register(Hold)
class HoldAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "wallet",
        "job",
        "amount",
        "status",
        "created_at",
        "settled_at",
    ]
    list_filter = ["status"]
    search_fields = ["job__id", "wallet__user__username"]
    readonly_fields = ["wallet", "job", "amount", "status", "created_at", "settled_at"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "wallet", "kind", "amount", "balance_after", "reason"]
    list_filter = ["kind"]
    search_fields = ["wallet__user__username", "reason", "hold__job__id"]
    readonly_fields = [f.name for f in LedgerEntry._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
