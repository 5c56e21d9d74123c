from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from assets.models import Asset
from providers.models import ModelSpec

PAGE_SIZE = 48


@login_required
def library(request):
    assets = Asset.objects.visible_to(request.user).filter(owner=request.user)
    page = Paginator(assets, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "assets/library.html", {"page": page})


@login_required
def asset_detail(request, pk):
    asset = get_object_or_404(Asset.objects.visible_to(request.user), pk=pk)
    context = {"asset": asset, "reference_model": _reference_model()}
    return render(request, "assets/detail.html", context)


def _reference_model() -> ModelSpec | None:
    """Return the first available model that takes a reference image, if any."""
    for model in ModelSpec.objects.available():
        if "reference_asset" in model.supports:
            return model
    return None
