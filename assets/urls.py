from django.urls import path

from assets import api, views

app_name = "assets"

urlpatterns = [
    path("library", views.library, name="library"),
    path("library/<uuid:pk>", views.asset_detail, name="detail"),
    path(
        "media/assets/<uuid:pk>/<str:variant>",
        api.AssetMediaView.as_view(),
        name="media",
    ),
]
