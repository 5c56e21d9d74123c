"""Job failures are stored in the owner's language; vendor text passes through."""

# Chinese messages use full-width punctuation.
# ruff: noqa: RUF001

import pytest
import requests
from django.utils import translation
from django.utils.translation import gettext

from accounts.models import UserPreference
from generation.dbgate import DatabaseGate
from generation.models import Job
from generation.tests.factories import run_worker, submit
from providers.adapters.openai_images import read_json
from providers.errors import ProviderError

job_path = pytest.mark.django_db(transaction=True)


def failed_job_with_bad_seed(client) -> dict:
    """Run a local job whose seed the worker rejects, as a stored job could hold."""
    job_id = submit(client).data["id"]
    Job.objects.filter(pk=job_id).update(params={"size": "512x512", "seed": "x"})
    run_worker()
    return client.get(f"/api/jobs/{job_id}").data


@job_path
@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("zh-hans", "种子 'x' 无效：应为整数。"),
        ("en", "Invalid seed 'x': expected an integer."),
    ],
)
def test_local_failure_message(catalog, owner, owner_client, language, message) -> None:
    UserPreference.objects.filter(user=owner).update(language=language)

    job = failed_job_with_bad_seed(owner_client)

    assert job["status"] == "failed"
    assert job["error"] == {"code": "invalid_request", "message": message}


@job_path
def test_worker_restores_thread_language(catalog, owner, owner_client) -> None:
    UserPreference.objects.filter(user=owner).update(language="zh-hans")
    job_id = submit(owner_client).data["id"]

    with translation.override("en"):
        run_worker()

        assert translation.get_language() == "en"
    assert Job.objects.get(pk=job_id).status == Job.Status.COMPLETED


@job_path
def test_jobs_of_two_owners(catalog, owner, stranger, owner_client, stranger_client):
    UserPreference.objects.filter(user=owner).update(language="zh-hans")
    chinese = failed_job_with_bad_seed(owner_client)
    english = failed_job_with_bad_seed(stranger_client)

    assert chinese["error"]["message"] == "种子 'x' 无效：应为整数。"
    assert english["error"]["message"] == "Invalid seed 'x': expected an integer."


def test_gate_thread_uses_caller_language() -> None:
    gate = DatabaseGate(threads=1)
    try:
        with translation.override("zh-hans"):
            chinese = gate.run(gettext, "Write a prompt.")
        english = gate.run(gettext, "Write a prompt.")
    finally:
        gate.close()

    assert chinese == "请填写提示词。"
    assert english == "Write a prompt."


def test_gate_batch_uses_caller_language() -> None:
    def translate_all(messages: list[str]) -> list[str]:
        return [gettext(message) for message in messages]

    gate = DatabaseGate(threads=1)
    try:
        with translation.override("zh-hans"):
            chinese = gate.run_batched(translate_all, "Write a prompt.")
        english = gate.run_batched(translate_all, "Write a prompt.")
    finally:
        gate.close()

    assert chinese == "请填写提示词。"
    assert english == "Write a prompt."


def test_unreadable_reply_chinese() -> None:
    response = requests.Response()
    response.status_code = 200
    response.headers["Content-Type"] = "text/html"
    response._content = b"<html></html>"

    with translation.override("zh-hans"), pytest.raises(ProviderError) as raised:
        read_json(response, gettext("image result"))

    assert raised.value.code == "provider_error"
    assert raised.value.message == "服务商返回的图片结果无法读取（text/html）。"
