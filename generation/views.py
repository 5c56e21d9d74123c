from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from assets.media import InvalidMedia
from assets.services import upload_image
from billing.money import format_amount
from billing.services import InsufficientFunds
from generation.api import jobs_for
from generation.forms import GenerateForm
from generation.services import CannotCancel, cancel_job, submit_job
from generation.validation import InvalidSubmission
from lightsource.api import rate_limited_page
from providers.models import ModelSpec

RECENT_JOBS = 12


@login_required
@require_http_methods(["GET", "POST"])
@rate_limited_page("jobs-submit")
def generator(request):
    models = list(ModelSpec.objects.available().select_related("provider"))
    form = GenerateForm(
        request.POST or None,
        request.FILES or None,
        models=models,
        initial=_initial(request),
    )
    if request.method == "POST" and form.is_valid():
        job = _submit(request, form)
        if job is not None and request.htmx:
            return render(request, "generation/job.html#job-card", {"job": job})
        if job is not None:
            return redirect("generation:job", pk=job.pk)
        status = 400
    else:
        status = 400 if request.method == "POST" else 200

    context = {"form": form, "models": models, "chosen": _chosen_model(models, form)}
    if request.htmx and request.GET.get("fields") == "model":
        return render(request, "generation/generator.html#model-fields", context)
    if request.htmx and status == 400:
        # The form posts into the job list, so its errors retarget to the form.
        template = "generation/generator.html#generate-form"
        response = render(request, template, context, status=status)
        return reswap(retarget(response, "#generate-form"), "outerHTML")

    context["jobs"] = jobs_for(request.user).filter(owner=request.user)[:RECENT_JOBS]
    return render(request, "generation/generator.html", context, status=status)


def _initial(request) -> dict:
    names = ("model", "prompt", "reference_asset")
    return {name: request.GET[name] for name in names if name in request.GET}


def _chosen_model(models: list[ModelSpec], form: GenerateForm) -> ModelSpec | None:
    name = form.data.get("model") or form.initial.get("model")
    by_name = {m.name: m for m in models}
    return by_name.get(name) or (models[0] if models else None)


def _submit(request, form: GenerateForm):
    params = form.params()
    try:
        if upload := form.cleaned_data.get("reference_file"):
            upload.seek(0)
            params["reference_asset"] = str(upload_image(request.user, upload).pk)
        job, _ = submit_job(
            request.user,
            form.cleaned_data["model"],
            form.cleaned_data["prompt"],
            params,
        )
    except InvalidMedia as error:
        form.add_error("reference_file", str(error))
        return None
    except InvalidSubmission as error:
        for field, items in error.errors.items():
            name = field.removeprefix("params.")
            target = name if name in form.fields else None
            for message, _code in items:
                form.add_error(target, message)
        return None
    except InsufficientFunds as error:
        form.add_error(
            None,
            gettext(
                "This costs %(cost)s and your balance is %(balance)s. "
                "Ask staff to top up your wallet."
            )
            % {
                "cost": format_amount(error.needed),
                "balance": format_amount(error.available),
            },
        )
        return None
    return job


@login_required
def job_detail(request, pk):
    job = get_object_or_404(jobs_for(request.user), pk=pk)
    if request.htmx:
        return render(request, "generation/job.html#job-card", {"job": job})
    return render(request, "generation/job.html", {"job": job})


@login_required
@require_POST
def cancel(request, pk):
    job = get_object_or_404(jobs_for(request.user), pk=pk)
    try:
        job = cancel_job(job)
    except CannotCancel as error:
        messages.error(request, str(error))
    if request.htmx:
        return render(request, "generation/job.html#job-card", {"job": job})
    return redirect("generation:job", pk=job.pk)
