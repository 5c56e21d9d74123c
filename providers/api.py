from rest_framework import generics

from providers.models import ModelSpec
from providers.serializers import ModelSpecSerializer


class ModelSpecListView(generics.ListAPIView):
    """The models a user can submit jobs to, with their prices and limits."""

    serializer_class = ModelSpecSerializer
    pagination_class = None

    def get_queryset(self):
        return ModelSpec.objects.available().select_related("provider")
