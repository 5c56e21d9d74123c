"""API errors are in the signed-in user's preferred language."""

# Chinese messages use full-width punctuation.
# ruff: noqa: RUF001

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation
from django.utils.translation import gettext

from accounts.language import preferred_language
from accounts.models import UserPreference
from conftest import make_user
from providers.models import ModelSpec


def set_language(user, language: str) -> None:
    UserPreference.objects.filter(user=user).update(language=language)


def submit_without_prompt(client, **headers):
    body = {"model": "local-image", "prompt": " ", "params": {}}
    return client.post("/api/jobs", body, format="json", **headers)


def test_submit_error_chinese_user(catalog, owner, owner_client) -> None:
    set_language(owner, "zh-hans")

    response = submit_without_prompt(owner_client)

    assert response.status_code == 400
    assert response.data["prompt"][0] == {"message": "请填写提示词。", "code": "blank"}
    assert response["Content-Language"] == "zh-hans"


def test_submit_error_english_user(catalog, owner, owner_client) -> None:
    response = submit_without_prompt(owner_client)

    assert response.status_code == 400
    assert response.data["prompt"][0] == {"message": "Write a prompt.", "code": "blank"}
    assert response["Content-Language"] == "en"


def test_preference_beats_accept_language(catalog, owner, owner_client) -> None:
    set_language(owner, "en")

    response = submit_without_prompt(owner_client, HTTP_ACCEPT_LANGUAGE="zh-CN")

    assert response.data["prompt"][0]["message"] == "Write a prompt."


def test_session_user_language(catalog, owner, client) -> None:
    set_language(owner, "zh-hans")
    client.force_login(owner)

    response = client.post(
        "/api/jobs",
        {"model": "local-image", "prompt": "", "params": {}},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.json()["prompt"][0]["message"] == "请填写提示词。"


def test_anonymous_follows_accept_language(anonymous_client) -> None:
    chinese = anonymous_client.get("/api/jobs", HTTP_ACCEPT_LANGUAGE="zh-CN")
    english = anonymous_client.get("/api/jobs")

    assert chinese.status_code == 401
    assert chinese.data == {
        "detail": "身份认证信息未提供。",
        "code": "not_authenticated",
    }
    assert english.data["detail"] == "Authentication credentials were not provided."


def submit_priced(client):
    return client.post(
        "/api/jobs",
        {"model": "local-image", "prompt": "雨夜里的灯塔", "params": {}},
        format="json",
    )


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("zh-hans", "余额不足：本次生成需要 5.00，你的余额为 0.00。"),
        ("en", "This job costs 5.00; your balance is 0.00."),
    ],
)
def test_insufficient_funds_message(
    catalog, owner, owner_client, language, message
) -> None:
    ModelSpec.objects.filter(name="local-image").update(price=500)
    set_language(owner, language)

    response = submit_priced(owner_client)

    assert response.status_code == 402
    assert response.data == {"detail": message, "code": "insufficient_funds"}


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("zh-hans", "任务已是“已取消”状态，无法取消。"),
        ("en", "The job is already canceled."),
    ],
)
def test_cancel_error_message(catalog, owner, owner_client, language, message) -> None:
    set_language(owner, language)
    job_id = submit_priced(owner_client).data["id"]
    owner_client.post(f"/api/jobs/{job_id}/cancel")

    response = owner_client.post(f"/api/jobs/{job_id}/cancel")

    assert response.status_code == 409
    assert response.data == {"detail": message, "code": "not_cancelable"}


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("zh-hans", "请上传图片（PNG、JPEG、WebP 或 GIF）。"),
        ("en", "Upload an image (PNG, JPEG, WebP or GIF)."),
    ],
)
def test_upload_error_message(owner, owner_client, language, message) -> None:
    set_language(owner, language)
    upload = SimpleUploadedFile("notes.png", b"not an image", "image/png")

    response = owner_client.post("/api/assets", {"file": upload}, format="multipart")

    assert response.status_code == 400
    assert response.data["file"][0] == {"message": message, "code": "invalid"}


def test_preferred_language_without_row(db) -> None:
    user = make_user("nopreference")
    UserPreference.objects.filter(user=user).delete()
    user.refresh_from_db()

    assert preferred_language(user) == "en"


@pytest.mark.parametrize(
    ("accept_language", "language"), [("zh-CN,zh;q=0.9", "zh-hans"), ("fr", "en")]
)
def test_register_keeps_request_language(
    anonymous_client, db, accept_language, language
) -> None:
    body = {
        "username": "xiaoming",
        "email": "xiaoming@example.com",
        "password": "amber-Lantern-river-42",
    }

    response = anonymous_client.post(
        "/api/auth/register", body, format="json", HTTP_ACCEPT_LANGUAGE=accept_language
    )

    assert response.status_code == 201
    preference = UserPreference.objects.get(user__username="xiaoming")
    assert preference.language == language


def test_not_found_chinese_user(owner, owner_client) -> None:
    set_language(owner, "zh-hans")

    response = owner_client.get("/api/jobs/00000000-0000-0000-0000-000000000000")

    assert response.status_code == 404
    assert response.data == {"detail": "未找到。", "code": "not_found"}


def test_bad_json_chinese_user(owner, owner_client) -> None:
    set_language(owner, "zh-hans")

    response = owner_client.post(
        "/api/jobs", data='{"model": "local', content_type="application/json"
    )

    assert response.status_code == 400
    assert response.data["code"] == "parse_error"
    assert response.data["detail"].startswith("JSON 解析错误 - ")


@pytest.mark.django_db
def test_login_error_follows_accept_language(anonymous_client, owner) -> None:
    body = {"username": "owner", "password": "wrong-Password-1"}
    with translation.override("zh-hans"):
        expected = gettext("No active account found with the given credentials")

    response = anonymous_client.post(
        "/api/auth/login", body, format="json", HTTP_ACCEPT_LANGUAGE="zh-CN"
    )

    assert expected != "No active account found with the given credentials"
    assert response.status_code == 401
    assert response.data["detail"] == expected
