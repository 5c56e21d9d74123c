from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext
from rest_framework import serializers

from accounts.models import UserPreference
from billing.money import format_amount
from billing.services import wallet_for

User = get_user_model()


class RegisterSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, max_length=128)

    def validate_username(self, value: str) -> str:
        if User.objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError(
                gettext("This username is taken."), code="unique"
            )
        return value

    def validate(self, attrs: dict) -> dict:
        candidate = User(username=attrs["username"], email=attrs["email"])
        try:
            password_validation.validate_password(attrs["password"], candidate)
        except DjangoValidationError as error:
            raise serializers.ValidationError(
                {
                    "password": [
                        serializers.ErrorDetail(message, code="weak_password")
                        for message in error.messages
                    ]
                }
            ) from None
        return attrs


class PreferenceSerializer(serializers.ModelSerializer):
    default_model = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = UserPreference
        fields = ["theme", "language", "notifications", "default_model"]


class UserSerializer(serializers.ModelSerializer):
    preference = PreferenceSerializer(read_only=True)
    balance = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "is_staff",
            "date_joined",
            "preference",
            "balance",
        ]

    def get_balance(self, user) -> str:
        return str(format_amount(wallet_for(user).balance))
