from rest_framework import serializers

from assets.links import absolute_url
from assets.models import Asset


class AssetSerializer(serializers.ModelSerializer):
    sha256 = serializers.CharField(source="blob_id", read_only=True)
    url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()

    class Meta:
        model = Asset
        fields = [
            "id",
            "kind",
            "mime_type",
            "width",
            "height",
            "duration",
            "size_bytes",
            "sha256",
            "url",
            "thumbnail_url",
        ]

    def get_url(self, asset: Asset) -> str:
        return absolute_url(self.context.get("request"), asset.pk, "file")

    def get_thumbnail_url(self, asset: Asset) -> str | None:
        if not asset.thumbnail_id:
            return None
        return absolute_url(self.context.get("request"), asset.pk, "thumbnail")


class AssetDetailSerializer(AssetSerializer):
    model = serializers.CharField(source="model_name", read_only=True)
    source_job = serializers.UUIDField(source="source_job_id", read_only=True)

    class Meta(AssetSerializer.Meta):
        fields = [
            *AssetSerializer.Meta.fields,
            "model",
            "prompt",
            "params",
            "source_job",
            "created_at",
        ]
