from django.utils import translation
from rest_framework import permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import (
    TokenBlacklistView,
    TokenObtainPairView,
    TokenRefreshView,
)

from accounts.serializers import RegisterSerializer, UserSerializer
from accounts.services import register_user
from lightsource.api import rate_limited


class RegisterView(APIView):
    permission_classes = [permissions.AllowAny]
    authentication_classes = []

    @rate_limited("auth-register", key="ip")
    def post(self, request):
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # A new account keeps the language of its sign-up request.
        user = register_user(
            **serializer.validated_data, language=translation.get_language()
        )
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class LoginView(TokenObtainPairView):
    @rate_limited("auth-login", key="ip")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class RefreshView(TokenRefreshView):
    pass


class LogoutView(TokenBlacklistView):
    """Endpoint that revokes a refresh token; access tokens live until they expire."""

    @rate_limited("auth-logout", key="ip")
    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        response.status_code = status.HTTP_204_NO_CONTENT
        response.data = None
        return response


class MeView(APIView):
    def get(self, request):
        return Response(UserSerializer(request.user).data)
