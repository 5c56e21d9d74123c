from django.urls import path, re_path

from accounts import api as accounts_api
from assets import api as assets_api
from generation import api as generation_api
from lightsource.views import api_not_found, health
from providers import api as providers_api

app_name = "api"

urlpatterns = [
    path("auth/register", accounts_api.RegisterView.as_view(), name="register"),
    path("auth/login", accounts_api.LoginView.as_view(), name="login"),
    path("auth/refresh", accounts_api.RefreshView.as_view(), name="refresh"),
    path("auth/logout", accounts_api.LogoutView.as_view(), name="logout"),
    path("auth/me", accounts_api.MeView.as_view(), name="me"),
    path("jobs", generation_api.JobListView.as_view(), name="jobs"),
    path("jobs/<uuid:pk>", generation_api.JobDetailView.as_view(), name="job"),
    path(
        "jobs/<uuid:pk>/cancel",
        generation_api.JobCancelView.as_view(),
        name="job-cancel",
    ),
    path("assets", assets_api.AssetListView.as_view(), name="assets"),
    path("assets/<uuid:pk>", assets_api.AssetDetailView.as_view(), name="asset"),
    path("models", providers_api.ModelSpecListView.as_view(), name="models"),
    path("health", health, name="health"),
    re_path(r"^.*$", api_not_found),
]
