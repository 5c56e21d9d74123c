import pytest
from django.test import Client
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from billing.models import Hold
from generation.models import Job
from generation.services import submit_job
from generation.worker import Worker

CAT_PROMPT = "一只在雨中奔跑的橘猫"
HTMX = {"HTTP_HX_REQUEST": "true"}
# Worker.run() calls close_old_connections(), which drops the connection inside
# a test transaction, so tests that run the worker commit for real.
WORKER_DB = pytest.mark.django_db(transaction=True)


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner_page(catalog, owner) -> Client:
    return page_client(owner)


@pytest.fixture
def stranger_page(catalog, stranger) -> Client:
    return page_client(stranger)


@pytest.fixture
def staff_page(catalog, staff) -> Client:
    return page_client(staff)


@pytest.fixture
def queued_job(catalog, owner) -> Job:
    job, _ = submit_job(owner, "local-image", CAT_PROMPT, {"size": "512x512"})
    return job


def form_data(**changes: str) -> dict:
    data = {"model": "local-image", "prompt": CAT_PROMPT, "size": "512x512"}
    data.update(changes)
    return data


def test_generator_lists_models(owner_page):
    response = owner_page.get("/")

    assert response.status_code == 200
    assertContains(response, '<option value="local-image"')
    assertContains(response, '<option value="local-video"')
    assertContains(response, "Offline preview (image)")
    assertContains(response, "Offline preview (video)")


def test_generator_labels_offline_renderer(owner_page):
    response = owner_page.get("/")

    assertContains(response, "Offline preview renderer")
    assertContains(response, "No AI model is used.")


def test_generator_shows_first_model_sizes(owner_page):
    response = owner_page.get("/")

    assertContains(response, '<option value="512x512">512x512</option>', html=True)
    assertNotContains(response, 'name="duration"')


def test_form_post_redirects_to_job(owner_page, owner):
    response = owner_page.post("/", form_data())

    job = Job.objects.get(owner=owner)
    assertRedirects(response, f"/jobs/{job.pk}", fetch_redirect_response=False)
    assert job.prompt == CAT_PROMPT
    assert job.model.name == "local-image"
    assert job.params["size"] == "512x512"
    assert job.status == Job.Status.QUEUED


def test_queued_job_page_polls(owner_page, queued_job):
    response = owner_page.get(f"/jobs/{queued_job.pk}")

    assert response.status_code == 200
    assertContains(response, "<progress")
    assertContains(response, f'hx-get="/jobs/{queued_job.pk}"')
    assertContains(response, 'hx-trigger="every 1s"')
    assertContains(response, '<noscript><meta http-equiv="refresh"')
    assertContains(response, CAT_PROMPT)


def test_queued_job_page_offers_cancel(owner_page, queued_job):
    response = owner_page.get(f"/jobs/{queued_job.pk}")

    assertContains(response, f'action="/jobs/{queued_job.pk}/cancel"')
    assertContains(response, "Waiting in the queue (position 1).")


def test_running_card_shows_percent(owner_page, queued_job):
    Job.objects.filter(pk=queued_job.pk).update(status=Job.Status.RUNNING, progress=40)

    response = owner_page.get(f"/jobs/{queued_job.pk}", **HTMX)

    assertContains(response, "Running · 40%")
    assertContains(response, '<progress max="100" value="40">')
    assertContains(response, 'hx-trigger="every 1s"')


def test_job_card_links_job_page(owner_page, queued_job):
    response = owner_page.get("/")

    assertContains(response, f'<a class="title" href="/jobs/{queued_job.pk}">')
    assertContains(response, "512x512")


def test_htmx_post_returns_job_card(owner_page, owner):
    response = owner_page.post("/", form_data(), **HTMX)

    job = Job.objects.get(owner=owner)
    assert response.status_code == 200
    assertContains(response, f'id="job-{job.pk}"')
    assertContains(response, 'hx-trigger="every 1s"')
    assertNotContains(response, "<html")
    assertNotContains(response, "<textarea")


def test_empty_prompt_rerenders_form(owner_page):
    response = owner_page.post("/", form_data(prompt="  "))

    assertContains(response, "Write a prompt.", status_code=400)
    assertContains(response, "<textarea", status_code=400)
    assert Job.objects.count() == 0


def test_unsupported_size_rerenders_form(owner_page):
    response = owner_page.post("/", form_data(size="999x999"))

    message = "local-image does not support size 999x999"
    assertContains(response, message, status_code=400)
    assertContains(response, CAT_PROMPT, status_code=400)
    assert Job.objects.count() == 0


def test_unknown_model_rerenders_form(owner_page):
    response = owner_page.post("/", form_data(model="no-such-model"))

    assertContains(response, "Select a valid choice.", status_code=400)
    assert Job.objects.count() == 0


def test_page_lets_htmx_swap_400(owner_page):
    response = owner_page.get("/")

    assertContains(response, '{"code": "400", "swap": true, "error": true}')


def test_invalid_htmx_post_returns_form(owner_page):
    response = owner_page.post("/", form_data(prompt=""), **HTMX)

    assertContains(response, "Write a prompt.", status_code=400)
    assertNotContains(response, "<html", status_code=400)
    assert response.headers["HX-Retarget"] == "#generate-form"
    assert response.headers["HX-Reswap"] == "outerHTML"
    assert Job.objects.count() == 0


@WORKER_DB
def test_completed_card_shows_thumbnail(owner_page, queued_job):
    Worker(burst=True).run()

    response = owner_page.get(f"/jobs/{queued_job.pk}", **HTMX)

    asset = queued_job.assets.get()
    assert response.status_code == 200
    assertContains(response, "Completed")
    assertContains(response, f'<img src="/media/assets/{asset.pk}/thumbnail"')
    assertContains(response, f'href="/library/{asset.pk}"')
    assertNotContains(response, "<html")


@WORKER_DB
def test_completed_card_stops_polling(owner_page, queued_job):
    Worker(burst=True).run()

    response = owner_page.get(f"/jobs/{queued_job.pk}", **HTMX)

    assertNotContains(response, "hx-get")
    assertNotContains(response, "hx-trigger")
    assertNotContains(response, "<progress")


@WORKER_DB
def test_completed_job_page_has_no_refresh(owner_page, queued_job):
    Worker(burst=True).run()

    response = owner_page.get(f"/jobs/{queued_job.pk}")

    assertNotContains(response, 'http-equiv="refresh"')
    assertNotContains(response, "hx-trigger")


def test_model_change_returns_fields(owner_page):
    response = owner_page.get("/?fields=model&model=local-video", **HTMX)

    assert response.status_code == 200
    assertContains(response, 'id="model-fields"')
    for size in ("640x360", "360x640", "480x480"):
        assertContains(response, f'<option value="{size}"')
    assertContains(response, 'name="duration"')
    assertContains(response, '<option value="4">4</option>', html=True)
    assertContains(response, '<option value="2">2</option>', html=True)
    assertNotContains(response, "<html")
    assertNotContains(response, "512x512")


def test_model_query_preselects_model(owner_page):
    response = owner_page.get("/?model=local-video")

    assertContains(response, 'name="duration"')
    assertContains(response, '<option value="local-video" selected')


def test_cancel_queued_job(owner_page, queued_job):
    response = owner_page.post(f"/jobs/{queued_job.pk}/cancel", follow=True)

    assertRedirects(response, f"/jobs/{queued_job.pk}")
    assertContains(response, '<span class="status">Canceled</span>', html=True)
    queued_job.refresh_from_db()
    assert queued_job.status == Job.Status.CANCELED
    assert queued_job.hold.status == Hold.Status.RELEASED


def test_htmx_cancel_returns_card(owner_page, queued_job):
    response = owner_page.post(f"/jobs/{queued_job.pk}/cancel", **HTMX)

    assert response.status_code == 200
    assertContains(response, '<span class="status">Canceled</span>', html=True)
    assertNotContains(response, "hx-trigger")
    assertNotContains(response, "<html")


@WORKER_DB
def test_cancel_finished_job_shows_message(owner_page, queued_job):
    Worker(burst=True).run()

    response = owner_page.post(f"/jobs/{queued_job.pk}/cancel", follow=True)

    assertContains(response, "The job is already completed.")
    queued_job.refresh_from_db()
    assert queued_job.status == Job.Status.COMPLETED


def test_cancel_get_not_allowed(owner_page, queued_job):
    response = owner_page.get(f"/jobs/{queued_job.pk}/cancel")

    assert response.status_code == 405


def test_stranger_job_page_not_found(stranger_page, queued_job):
    response = stranger_page.get(f"/jobs/{queued_job.pk}")

    assert response.status_code == 404


def test_stranger_cancel_not_found(stranger_page, queued_job):
    response = stranger_page.post(f"/jobs/{queued_job.pk}/cancel")

    assert response.status_code == 404
    queued_job.refresh_from_db()
    assert queued_job.status == Job.Status.QUEUED


def test_stranger_recent_jobs_exclude_owner(stranger_page, queued_job):
    response = stranger_page.get("/")

    assertNotContains(response, f"job-{queued_job.pk}")
    assertContains(response, "Your jobs appear here.")


def test_staff_views_any_job(staff_page, queued_job):
    response = staff_page.get(f"/jobs/{queued_job.pk}")

    assert response.status_code == 200
    assertContains(response, CAT_PROMPT)


def test_generator_lists_recent_jobs(owner_page, queued_job):
    response = owner_page.get("/")

    assertContains(response, f'id="job-{queued_job.pk}"')
    assertNotContains(response, "Your jobs appear here.")
