from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.utils.translation import gettext
from rest_framework import generics, permissions, status
from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from assets.links import token_is_valid
from assets.media import InvalidMedia
from assets.models import Asset
from assets.ranges import file_response
from assets.serializers import AssetDetailSerializer
from assets.services import upload_image
from lightsource.api import rate_limited


class AssetListView(generics.ListAPIView):
    serializer_class = AssetDetailSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return Asset.objects.visible_to(self.request.user)

    @rate_limited("assets-upload")
    def post(self, request):
        """Upload an image to the library, e.g. as a reference for a later job."""
        uploaded = request.FILES.get("file")
        if uploaded is None:
            raise ValidationError(
                {
                    "file": [
                        ErrorDetail(
                            gettext("Attach an image as 'file'."), code="required"
                        )
                    ]
                }
            )
        try:
            asset = upload_image(request.user, uploaded)
        except InvalidMedia as error:
            raise ValidationError(
                {"file": [ErrorDetail(str(error), code="invalid")]}
            ) from None
        data = AssetDetailSerializer(asset, context={"request": request}).data
        return Response(data, status=status.HTTP_201_CREATED)


class AssetDetailView(generics.RetrieveAPIView):
    serializer_class = AssetDetailSerializer

    def get_queryset(self):
        return Asset.objects.visible_to(self.request.user)


class AssetMediaView(APIView):
    """Serve an asset's file or thumbnail to its owner, staff or a signed link."""

    permission_classes = [permissions.AllowAny]

    def get(self, request, pk, variant: str):
        if variant not in ("file", "thumbnail"):
            raise Http404
        if self._needs_login(request):
            # Sent for any id, so it reveals nothing about which assets exist.
            return redirect_to_login(request.get_full_path())
        # The same 404 for "no such asset" and "not yours", so ids cannot be probed.
        asset = Asset.objects.select_related("blob", "thumbnail").filter(pk=pk).first()
        if asset is None or not self._allowed(request, asset, variant):
            raise Http404

        blob = asset.blob if variant == "file" else asset.thumbnail
        if blob is None:
            raise Http404
        suffix = "" if variant == "file" else "-thumbnail"
        filename = f"lightsource-{asset.pk}{suffix}{blob.extension}"
        download = request.query_params.get("download") == "1"
        return file_response(request, blob.file, blob.mime_type, filename, download)

    def _needs_login(self, request) -> bool:
        """Return True for a signed-out browser opening a link without a token.

        Image and video tags do not ask for HTML, so they still get 404.
        """
        if request.user.is_authenticated or request.query_params.get("token"):
            return False
        return "text/html" in request.headers.get("Accept", "")

    def _allowed(self, request, asset: Asset, variant: str) -> bool:
        token = request.query_params.get("token")
        if token and token_is_valid(asset.pk, variant, token):
            return True
        if not request.user.is_authenticated:
            return False
        return Asset.objects.visible_to(request.user).filter(pk=asset.pk).exists()
