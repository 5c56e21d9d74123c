from django.contrib import admin, messages

from generation.models import Job, ProviderCall, WorkerProcess
from generation.services import CannotCancel, cancel_job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "owner",
        "model",
        "status",
        "progress",
        "attempts",
        "error_code",
        "locked_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "model__kind", "provider", "error_code"]
    search_fields = ["id", "owner__username", "prompt", "remote_task_id"]
    list_select_related = ["owner", "model"]
    # Status, money and lease fields change only through the services, so a
    # hand edit cannot leave a hold unsettled; use the cancel action instead.
    readonly_fields = [
        "owner",
        "model",
        "provider",
        "remote_model",
        "price",
        "status",
        "progress",
        "error_code",
        "error_message",
        "attempts",
        "locked_by",
        "locked_until",
        "remote_task_id",
        "idempotency_key",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    ]
    actions = ["cancel_jobs"]
    inlines = []

    @admin.action(description="Cancel the selected jobs and release their holds")
    def cancel_jobs(self, request, queryset) -> None:
        canceled = 0
        for job in queryset:
            try:
                cancel_job(job)
                canceled += 1
            except CannotCancel:
                continue
        self.message_user(request, f"Canceled {canceled} jobs.", messages.SUCCESS)


@admin.register(ProviderCall)
class ProviderCallAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "job",
        "attempt",
        "method",
        "url",
        "status",
        "duration_ms",
    ]
    list_filter = ["method", "status"]
    search_fields = ["job__id", "url"]
    raw_id_fields = ["job"]
    readonly_fields = [f.name for f in ProviderCall._meta.fields]


class ProviderCallInline(admin.TabularInline):
    model = ProviderCall
    extra = 0
    can_delete = False
    fields = [
        "created_at",
        "attempt",
        "method",
        "url",
        "status",
        "duration_ms",
        "error",
        "response_excerpt",
    ]
    readonly_fields = fields


JobAdmin.inlines = [ProviderCallInline]


@admin.register(WorkerProcess)
class WorkerProcessAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "hostname",
        "pid",
        "queues",
        "concurrency",
        "in_flight",
        "alive",
        "heartbeat_at",
        "started_at",
        "stopped_at",
    ]
    list_filter = ["hostname", "stopped_at"]
    search_fields = ["id", "hostname"]
    readonly_fields = [f.name for f in WorkerProcess._meta.fields]

    @admin.display(boolean=True)
    def alive(self, worker: WorkerProcess) -> bool:
        return worker.is_alive()
