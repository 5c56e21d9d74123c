from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from assets.models import Asset

PAGE_SIZE = 48


@login_required
def library(request):
    assets = Asset.objects.visible_to(request.user).filter(owner=request.user)
    page = Paginator(assets, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "assets/library.html", {"page": page})


@login_required
def asset_detail(request, pk):
    asset = get_object_or_404(Asset.objects.visible_to(request.user), pk=pk)
    return render(request, "assets/detail.html", {"asset": asset})
