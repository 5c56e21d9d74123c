"""Pages follow the signed-in user's language, and the header switches it."""

# Chinese text uses full-width punctuation.
# ruff: noqa: RUF001

import pytest
from django.test import Client
from pytest_django.asserts import assertContains, assertNotContains

from accounts.models import UserPreference
from generation.models import Job
from generation.services import cancel_job, submit_job


def page_client(user, language: str) -> Client:
    UserPreference.objects.filter(user=user).update(language=language)
    client = Client()
    client.force_login(user)
    return client


def failed_job(owner) -> Job:
    job, _ = submit_job(owner, "local-image", "雨夜里的灯塔", {"size": "512x512"})
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.FAILED,
        error_code="provider_rejected",
        error_message="❌ 生成失败: guardrails",
    )
    return job


def test_generator_chinese_user(catalog, owner) -> None:
    response = page_client(owner, "zh-hans").get("/")

    assertContains(response, '<html lang="zh-hans">')
    assertContains(response, "离线预览渲染器，不使用 AI 模型。")
    assertContains(response, '<label for="id_prompt">提示词</label>', html=True)
    assertContains(response, "素材库")
    assertContains(response, "退出登录")
    assertNotContains(response, "Offline preview renderer")


def test_generator_english_user(catalog, owner) -> None:
    response = page_client(owner, "en").get("/", HTTP_ACCEPT_LANGUAGE="zh-CN")

    assertContains(response, '<html lang="en">')
    assertContains(response, "Offline preview renderer. No AI model is used.")
    assertContains(response, '<label for="id_prompt">Prompt</label>', html=True)
    assertNotContains(response, "提示词")


def test_job_card_chinese_user(catalog, owner) -> None:
    job, _ = submit_job(owner, "local-image", "灯塔", {"size": "512x512"})
    client = page_client(owner, "zh-hans")

    queued = client.get(f"/jobs/{job.pk}")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, progress=40)
    running = client.get(f"/jobs/{job.pk}")

    assertContains(queued, "排队中")
    assertContains(queued, "排队等待中（第 1 位）。")
    assertContains(queued, "取消")
    assertContains(running, "生成中 · 40%")


def test_failed_card_keeps_vendor_text(catalog, owner) -> None:
    job = failed_job(owner)

    response = page_client(owner, "zh-hans").get(f"/jobs/{job.pk}")

    assertContains(response, "失败")
    assertContains(response, "❌ 生成失败: guardrails")


def test_cancel_flash_chinese_user(catalog, owner) -> None:
    job, _ = submit_job(owner, "local-image", "灯塔", {"size": "512x512"})
    cancel_job(job)
    client = page_client(owner, "zh-hans")

    response = client.post(f"/jobs/{job.pk}/cancel", follow=True)

    assertContains(response, "任务已是“已取消”状态，无法取消。")


def test_library_chinese_user(catalog, owner) -> None:
    response = page_client(owner, "zh-hans").get("/library")

    assertContains(response, "<h1>素材库</h1>", html=True)
    assertContains(response, "这里还没有内容。")


@pytest.mark.django_db
def test_login_page_follows_accept_language(client) -> None:
    chinese = client.get("/login", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    english = client.get("/login", HTTP_ACCEPT_LANGUAGE="en-US")

    assertContains(chinese, "<h1>登录</h1>", html=True)
    assertContains(chinese, '<a href="/signup">注册</a>', html=True)
    assertContains(english, "<h1>Log in</h1>", html=True)


@pytest.mark.django_db
def test_signup_keeps_page_language(client) -> None:
    password = "amber-Lantern-river-42"
    data = {
        "username": "xiaoming",
        "email": "xiaoming@example.com",
        "password1": password,
        "password2": password,
    }

    client.post("/signup", data, HTTP_ACCEPT_LANGUAGE="zh-CN")

    preference = UserPreference.objects.get(user__username="xiaoming")
    assert preference.language == "zh-hans"


def test_switch_stores_preference(catalog, owner) -> None:
    client = page_client(owner, "en")

    response = client.post("/language", {"language": "zh-hans", "next": "/library"})

    assert response.status_code == 302
    assert response["Location"] == "/library"
    assert UserPreference.objects.get(user=owner).language == "zh-hans"
    assertContains(client.get("/library"), "<h1>素材库</h1>", html=True)


def test_staff_switch_stores_preference(catalog, staff) -> None:
    client = page_client(staff, "en")

    client.post("/language", {"language": "zh-hans", "next": "/"})

    assert UserPreference.objects.get(user=staff).language == "zh-hans"


def test_switch_rejects_unknown_language(catalog, owner) -> None:
    client = page_client(owner, "zh-hans")

    client.post("/language", {"language": "xx", "next": "/"})

    assert UserPreference.objects.get(user=owner).language == "zh-hans"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/"])
def test_switch_ignores_external_next(catalog, owner, target) -> None:
    client = page_client(owner, "en")

    response = client.post("/language", {"language": "zh-hans", "next": target})

    assert response.status_code == 302
    assert "evil.example" not in response["Location"]


@pytest.mark.django_db
def test_switch_sets_visitor_cookie(client) -> None:
    client.post("/language", {"language": "zh-hans", "next": "/login"})

    assertContains(client.get("/login"), "<h1>登录</h1>", html=True)


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_language_menu_names_own_language(catalog, owner, language) -> None:
    response = page_client(owner, language).get("/")

    assertContains(response, ">English</option>")
    assertContains(response, ">简体中文</option>")


def test_missing_page_chinese_user(catalog, owner) -> None:
    response = page_client(owner, "zh-hans").get("/no-such-page")

    assert response.status_code == 404
    assertContains(response, "页面不存在", status_code=404)
    assertContains(response, "返回生成页面", status_code=404)


def test_missing_page_english_visitor(client) -> None:
    response = client.get("/no-such-page")

    assertContains(response, "Page not found", status_code=404)
