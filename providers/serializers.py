from rest_framework import serializers

from billing.money import format_amount
from providers.models import ModelSpec


class ModelSpecSerializer(serializers.ModelSerializer):
    price = serializers.SerializerMethodField()
    provider_kind = serializers.CharField(source="provider.kind", read_only=True)
    label = serializers.CharField(source="display_name", read_only=True)

    class Meta:
        model = ModelSpec
        fields = [
            "name",
            "label",
            "description",
            "kind",
            "provider_kind",
            "price",
            "price_unit",
            "sizes",
            "durations",
            "max_n",
            "max_prompt_chars",
            "supports",
        ]

    def get_price(self, model: ModelSpec) -> str:
        return str(format_amount(model.price))
