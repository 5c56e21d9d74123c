from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.decorators import method_decorator
from django.views import i18n as i18n_views
from django.views.decorators.http import require_http_methods, require_POST

from accounts.forms import SignupForm
from accounts.models import UserPreference
from accounts.services import register_user
from lightsource.api import rate_limited_page


@require_http_methods(["GET", "POST"])
@rate_limited_page("auth-register", key="ip")
def signup(request):
    if request.user.is_authenticated:
        return redirect("generation:generator")

    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = register_user(
            form.cleaned_data["username"],
            form.cleaned_data["email"],
            form.cleaned_data["password1"],
            # The new account keeps the language the sign-up page was shown in.
            language=translation.get_language(),
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("generation:generator")
    return render(request, "accounts/signup.html", {"form": form})


@method_decorator(rate_limited_page("auth-login", key="ip"), name="post")
class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


@require_POST
def set_language(request):
    """Switch the pages' language, and store it as a signed-in user's preference.

    Django's set_language view checks the language and the `next` URL and sets
    the language cookie that anonymous visitors' pages follow.
    """
    response = i18n_views.set_language(request)
    language = request.POST.get("language", "")
    if request.user.is_authenticated and language in dict(settings.LANGUAGES):
        UserPreference.objects.update_or_create(
            user=request.user, defaults={"language": language}
        )
    return response
