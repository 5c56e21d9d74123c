from django.db.models import Prefetch
from django.utils.translation import gettext
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from assets.models import Asset
from billing.money import format_amount
from billing.services import InsufficientFunds
from generation.models import Job
from generation.serializers import JobCreateSerializer, JobSerializer
from generation.services import (
    CannotCancel,
    IdempotencyConflict,
    cancel_job,
    submit_job,
)
from generation.validation import InvalidSubmission
from lightsource.api import ApiError, rate_limited

MAX_IDEMPOTENCY_KEY_CHARS = Job._meta.get_field("idempotency_key").max_length


def jobs_for(user):
    assets = Prefetch("assets", queryset=Asset.objects.order_by("created_at"))
    jobs = Job.objects.visible_to(user)
    return jobs.select_related("model").prefetch_related(assets)


def submission_errors(errors: dict) -> dict:
    """Nest "params.size" keys under "params", in DRF's error shape."""
    nested: dict = {}
    for field, items in errors.items():
        details = [{"message": message, "code": code} for message, code in items]
        if field.startswith("params."):
            nested.setdefault("params", {})[field.removeprefix("params.")] = details
        else:
            nested[field] = details
    return nested


class JobListView(generics.ListCreateAPIView):
    serializer_class = JobSerializer

    def get_queryset(self):
        return jobs_for(self.request.user)

    @rate_limited("jobs-submit")
    def post(self, request, *args, **kwargs):
        shape = JobCreateSerializer(data=request.data)
        shape.is_valid(raise_exception=True)
        data = shape.validated_data
        key = request.headers.get("Idempotency-Key") or None
        if key and len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
            raise ApiError(
                gettext(
                    "The Idempotency-Key header must be at most %(max)s characters."
                )
                % {"max": MAX_IDEMPOTENCY_KEY_CHARS},
                code="invalid_request",
            )
        try:
            job, created = submit_job(
                request.user, data["model"], data["prompt"], data["params"], key
            )
        except InvalidSubmission as error:
            return Response(submission_errors(error.errors), status=400)
        except IdempotencyConflict as error:
            raise ApiError(
                gettext(
                    "This Idempotency-Key was already used for a different job "
                    "(%(job)s). Use a new key for a new request."
                )
                % {"job": error.job.pk},
                code="invalid_request",
                status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            ) from None
        except InsufficientFunds as error:
            raise ApiError(
                gettext("This job costs %(cost)s; your balance is %(balance)s.")
                % {
                    "cost": format_amount(error.needed),
                    "balance": format_amount(error.available),
                },
                code="insufficient_funds",
                status_code=status.HTTP_402_PAYMENT_REQUIRED,
            ) from None

        job = jobs_for(request.user).get(pk=job.pk)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(
            JobSerializer(job, context={"request": request}).data, status=code
        )


class JobDetailView(generics.RetrieveAPIView):
    serializer_class = JobSerializer

    def get_queryset(self):
        return jobs_for(self.request.user)


class JobCancelView(APIView):
    def post(self, request, pk):
        job = generics.get_object_or_404(jobs_for(request.user), pk=pk)
        try:
            job = cancel_job(job)
        except CannotCancel as error:
            raise ApiError(str(error), code="not_cancelable", status_code=409) from None
        job = jobs_for(request.user).get(pk=job.pk)
        return Response(JobSerializer(job, context={"request": request}).data)
