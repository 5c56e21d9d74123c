from rest_framework import serializers

from assets.serializers import AssetSerializer
from billing.money import format_amount
from generation.models import Job, attach_queue_positions


class JobListSerializer(serializers.ListSerializer):
    """List serializer that reads the queue positions of a page of jobs in one query."""

    def to_representation(self, data):
        jobs = list(data.all() if hasattr(data, "all") else data)
        attach_queue_positions(jobs)
        return super().to_representation(jobs)


class JobSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    price = serializers.SerializerMethodField()
    error = serializers.JSONField(read_only=True)
    assets = AssetSerializer(many=True, read_only=True)
    queue_position = serializers.SerializerMethodField()

    class Meta:
        model = Job
        list_serializer_class = JobListSerializer
        fields = [
            "id",
            "model",
            "prompt",
            "params",
            "status",
            "progress",
            "error",
            "price",
            "created_at",
            "started_at",
            "finished_at",
            "assets",
            "queue_position",
        ]

    def get_price(self, job: Job) -> str:
        return str(format_amount(job.price))

    def get_queue_position(self, job: Job) -> int | None:
        return job.queue_position()


class JobCreateSerializer(serializers.Serializer):
    """Shape only; the model's limits are checked by the submit service."""

    model = serializers.CharField(max_length=100)
    prompt = serializers.CharField(allow_blank=True, trim_whitespace=False)
    params = serializers.JSONField(required=False, default=dict)
