import uuid

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as BaseUserManager
from django.db import models


class UserManager(BaseUserManager):
    """Load each user with their preference in the same query.

    Session and JWT authentication fetch the user through this manager, so
    reading the preferred language of a signed-in user costs no extra query.
    """

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().select_related("preference")


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(blank=True)

    objects = UserManager()


class UserPreference(models.Model):
    class Theme(models.TextChoices):
        SYSTEM = "system", "System"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    class Language(models.TextChoices):
        ENGLISH = "en", "English"
        CHINESE = "zh-hans", "简体中文"

    user = models.OneToOneField(
        User, on_delete=models.CASCADE, related_name="preference"
    )
    theme = models.CharField(max_length=10, choices=Theme, default=Theme.SYSTEM)
    language = models.CharField(
        max_length=10, choices=Language, default=Language.ENGLISH
    )
    notifications = models.BooleanField(default=True)
    default_model = models.ForeignKey(
        "providers.ModelSpec", null=True, blank=True, on_delete=models.SET_NULL
    )

    def __str__(self) -> str:
        return f"preferences of {self.user}"
