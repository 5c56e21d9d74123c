from django.urls import path

from generation import views

app_name = "generation"

urlpatterns = [
    path("", views.generator, name="generator"),
    path("jobs/<uuid:pk>", views.job_detail, name="job"),
    path("jobs/<uuid:pk>/cancel", views.cancel, name="cancel"),
]
