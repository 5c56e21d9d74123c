from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_http_methods

from accounts.forms import SignupForm
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
