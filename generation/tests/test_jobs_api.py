import hashlib
import io
from datetime import datetime

import av
import pytest
from PIL import Image
from rest_framework.test import APIClient

from assets.models import Asset, Blob
from billing.models import Hold, Wallet
from billing.services import topup
from conftest import PASSWORD
from generation.models import Job
from generation.tests.factories import (
    body_of,
    completed_job,
    fetch,
    run_worker,
    submit,
)
from generation.validation import MAX_SEED
from lightsource.pagination import Pagination
from providers import registry
from providers.errors import ProviderError
from providers.models import ModelSpec

CAT_PROMPT = "一只在雨中奔跑的橘猫，赛博朋克风格！🐱"  # noqa: RUF001
JOB_FIELDS = {
    "id",
    "model",
    "prompt",
    "params",
    "status",
    "progress",
    "error",
    "price",
    "created_at",
    "started_at",
    "finished_at",
    "assets",
    "queue_position",
}
ASSET_FIELDS = {
    "id",
    "kind",
    "mime_type",
    "width",
    "height",
    "duration",
    "size_bytes",
    "sha256",
    "url",
    "thumbnail_url",
}
VIDEO_PARAMS = {"size": "360x640", "duration": 2}


class BrokenAdapter:
    kind = "local"

    def generate(self, *args, **kwargs):
        raise ProviderError("provider_error", "boom")


@pytest.fixture
def signed_up_client(catalog) -> APIClient:
    """A client of a user who registered and logged in over HTTP."""
    client = APIClient()
    account = {"username": "newcomer", "email": "newcomer@example.com"}
    registered = client.post(
        "/api/auth/register", {**account, "password": PASSWORD}, format="json"
    )
    assert registered.status_code == 201

    tokens = client.post(
        "/api/auth/login",
        {"username": "newcomer", "password": PASSWORD},
        format="json",
    )
    assert tokens.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.data['access']}")
    return client


@pytest.fixture
def priced_image_model(catalog) -> ModelSpec:
    ModelSpec.objects.filter(name="local-image").update(price=500)
    return ModelSpec.objects.get(name="local-image")


def balance_of(user) -> int:
    return Wallet.objects.get(user=user).balance


def hold_of(job_id) -> Hold:
    return Hold.objects.get(job_id=job_id)


def job_url(job_id) -> str:
    return f"/api/jobs/{job_id}"


def listed_ids(response) -> set[str]:
    return {job["id"] for job in response.data["results"]}


# End to end: register, log in, submit, run the worker, download.


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prompt", ["a lighthouse at dusk", CAT_PROMPT])
def test_image_job_completes(signed_up_client, prompt) -> None:
    submitted = submit(signed_up_client, prompt=prompt)
    assert submitted.status_code == 201

    run_worker()

    job = signed_up_client.get(job_url(submitted.data["id"])).data
    assert set(job) >= JOB_FIELDS
    assert job["model"] == "local-image"
    assert job["prompt"] == prompt
    assert job["params"]["size"] == "512x512"
    assert job["status"] == "completed"
    assert job["progress"] == 100
    assert job["error"] is None
    assert job["price"] == "0.00"
    assert job["queue_position"] is None
    created, started, finished = (
        datetime.fromisoformat(job[name])
        for name in ("created_at", "started_at", "finished_at")
    )
    assert created <= started
    assert started <= finished
    assert len(job["assets"]) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prompt", ["a lighthouse at dusk", CAT_PROMPT])
def test_image_asset_downloads_as_png(signed_up_client, prompt) -> None:
    job = completed_job(signed_up_client, prompt=prompt)
    asset = job["assets"][0]
    assert set(asset) >= ASSET_FIELDS
    assert asset["kind"] == "image"
    assert asset["mime_type"] == "image/png"
    assert asset["width"] == 512
    assert asset["height"] == 512
    assert asset["duration"] is None
    assert asset["url"].startswith("http://testserver/")

    response = fetch(signed_up_client, asset["url"])
    content = body_of(response)

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert hashlib.sha256(content).hexdigest() == asset["sha256"]
    assert len(content) == asset["size_bytes"]
    with Image.open(io.BytesIO(content)) as image:
        assert image.format == "PNG"
        assert image.size == (512, 512)


@pytest.mark.django_db(transaction=True)
def test_image_thumbnail_is_webp(signed_up_client) -> None:
    asset = completed_job(signed_up_client)["assets"][0]

    response = fetch(signed_up_client, asset["thumbnail_url"])

    assert response.status_code == 200
    assert response["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(body_of(response))) as thumbnail:
        assert thumbnail.format == "WEBP"
        assert max(thumbnail.size) <= 512


@pytest.mark.django_db(transaction=True)
def test_video_job_completes(signed_up_client) -> None:
    job = completed_job(signed_up_client, model="local-video", params=VIDEO_PARAMS)

    assert job["status"] == "completed"
    assert job["progress"] == 100
    assert job["error"] is None
    assert job["params"]["duration"] == 2
    assert len(job["assets"]) == 1
    asset = job["assets"][0]
    assert asset["kind"] == "video"
    assert asset["mime_type"] == "video/mp4"
    assert asset["width"] == 360
    assert asset["height"] == 640
    assert asset["duration"] == pytest.approx(2, abs=0.2)


@pytest.mark.django_db(transaction=True)
def test_video_asset_decodes_as_h264(signed_up_client) -> None:
    job = completed_job(signed_up_client, model="local-video", params=VIDEO_PARAMS)
    asset = job["assets"][0]

    response = fetch(signed_up_client, asset["url"])
    content = body_of(response)

    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert hashlib.sha256(content).hexdigest() == asset["sha256"]
    assert len(content) == asset["size_bytes"]
    with av.open(io.BytesIO(content)) as container:
        stream = container.streams.video[0]
        assert "mp4" in container.format.name
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.width == 360
        assert stream.codec_context.height == 640


@pytest.mark.django_db(transaction=True)
def test_video_poster_is_portrait_webp(signed_up_client) -> None:
    job = completed_job(signed_up_client, model="local-video", params=VIDEO_PARAMS)

    response = fetch(signed_up_client, job["assets"][0]["thumbnail_url"])

    assert response.status_code == 200
    assert response["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(body_of(response))) as poster:
        assert poster.format == "WEBP"
        assert poster.width < poster.height


# Seeds


def test_seed_generated_when_missing(catalog, owner_client) -> None:
    response = submit(owner_client)

    seed = response.data["params"]["seed"]
    assert isinstance(seed, int)
    assert 0 <= seed <= MAX_SEED
    assert Job.objects.get(pk=response.data["id"]).params["seed"] == seed


def test_seed_kept_when_given(catalog, owner_client) -> None:
    response = submit(owner_client, params={"size": "512x512", "seed": 42})

    assert response.data["params"]["seed"] == 42


@pytest.mark.django_db(transaction=True)
def test_same_seed_same_file(catalog, owner_client) -> None:
    params = {"size": "512x512", "seed": 42}
    first = completed_job(owner_client, prompt=CAT_PROMPT, params=params)
    second = completed_job(owner_client, prompt=CAT_PROMPT, params=params)

    assert first["id"] != second["id"]
    assert first["assets"][0]["id"] != second["assets"][0]["id"]
    assert first["assets"][0]["sha256"] == second["assets"][0]["sha256"]
    assert Asset.objects.count() == 2
    # One blob for the image and one for its thumbnail, shared by both assets.
    assert Blob.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_other_seed_other_file(catalog, owner_client) -> None:
    first = completed_job(owner_client, params={"size": "512x512", "seed": 1})
    second = completed_job(owner_client, params={"size": "512x512", "seed": 2})

    assert first["assets"][0]["sha256"] != second["assets"][0]["sha256"]


# Validation: each bad submission names its field and changes nothing.

INVALID_SUBMISSIONS = [
    ("unknown model", {"model": "no-such-model"}, ["model"], "unknown_model"),
    ("model null", {"model": None}, ["model"], "null"),
    ("empty prompt", {"prompt": ""}, ["prompt"], "blank"),
    ("whitespace prompt", {"prompt": " \n\t\u3000"}, ["prompt"], "blank"),
    (
        "unsupported size",
        {"params": {"size": "256x256"}},
        ["params", "size"],
        "unsupported",
    ),
    (
        "malformed size",
        {"params": {"size": "512 by 512"}},
        ["params", "size"],
        "invalid",
    ),
    ("size not text", {"params": {"size": 512}}, ["params", "size"], "invalid"),
    (
        "unknown param",
        {"params": {"style": "noir"}},
        ["params", "style"],
        "unsupported",
    ),
    ("params a list", {"params": ["512x512"]}, ["params"], "invalid"),
    ("params a string", {"params": "512x512"}, ["params"], "invalid"),
    ("negative seed", {"params": {"seed": -1}}, ["params", "seed"], "invalid"),
    (
        "seed too large",
        {"params": {"seed": MAX_SEED + 1}},
        ["params", "seed"],
        "invalid",
    ),
    ("seed a string", {"params": {"seed": "42"}}, ["params", "seed"], "invalid"),
    ("seed a fraction", {"params": {"seed": 4.5}}, ["params", "seed"], "invalid"),
    ("seed a boolean", {"params": {"seed": True}}, ["params", "seed"], "invalid"),
    ("n above max_n", {"params": {"n": 5}}, ["params", "n"], "invalid"),
    ("n zero", {"params": {"n": 0}}, ["params", "n"], "invalid"),
    (
        "duration not offered",
        {"model": "local-video", "params": {"duration": 3}},
        ["params", "duration"],
        "unsupported",
    ),
    (
        "option model lacks",
        {"model": "local-video", "params": {"negative_prompt": "blur"}},
        ["params", "negative_prompt"],
        "unsupported",
    ),
    (
        "negative prompt not text",
        {"params": {"negative_prompt": ["blur"]}},
        ["params", "negative_prompt"],
        "invalid",
    ),
    (
        "null character in option",
        {"params": {"negative_prompt": "blur\x00"}},
        ["params", "negative_prompt"],
        "null_characters_not_allowed",
    ),
    (
        "null character in prompt",
        {"prompt": "a cat\x00"},
        ["prompt"],
        "null_characters_not_allowed",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "path", "code"),
    [case[1:] for case in INVALID_SUBMISSIONS],
    ids=[case[0] for case in INVALID_SUBMISSIONS],
)
def test_submit_rejects_invalid(
    priced_image_model, owner, owner_client, overrides, path, code
) -> None:
    topup(owner, 1000, "test")
    body = {"model": "local-image", "prompt": "a lighthouse", "params": {}}
    body.update(overrides)

    response = owner_client.post("/api/jobs", body, format="json")

    assert response.status_code == 400
    errors = response.data
    for key in path:
        errors = errors[key]
    assert isinstance(errors, list)
    assert all(set(error) == {"message", "code"} for error in errors)
    assert code in [error["code"] for error in errors]
    assert Job.objects.count() == 0
    assert Hold.objects.count() == 0
    assert balance_of(owner) == 1000


def test_submit_nests_param_errors(catalog, owner_client) -> None:
    params = {"size": "1x1", "seed": -1}

    response = submit(owner_client, params=params)

    assert set(response.data) == {"params"}
    assert set(response.data["params"]) == {"size", "seed"}


def test_submit_rejects_long_prompt(priced_image_model, owner, owner_client) -> None:
    priced_image_model.max_prompt_chars = 10
    priced_image_model.save(update_fields=["max_prompt_chars"])
    topup(owner, 1000, "test")

    response = submit(owner_client, prompt="x" * 11)

    assert response.status_code == 400
    assert response.data["prompt"][0]["code"] == "max_length"
    assert "10" in response.data["prompt"][0]["message"]
    assert Job.objects.count() == 0
    assert Hold.objects.count() == 0
    assert balance_of(owner) == 1000


def test_submit_requires_model(catalog, owner_client) -> None:
    body = {"prompt": "a lighthouse", "params": {}}

    response = owner_client.post("/api/jobs", body, format="json")

    assert response.status_code == 400
    assert response.data["model"][0]["code"] == "required"
    assert Job.objects.count() == 0


def test_submit_rejects_list_body(catalog, owner_client) -> None:
    response = owner_client.post("/api/jobs", [{"model": "local-image"}], format="json")

    assert response.status_code == 400
    assert response.data["non_field_errors"][0]["code"] == "invalid"
    assert Job.objects.count() == 0


def test_submit_counts_characters_not_bytes(catalog, owner_client) -> None:
    ModelSpec.objects.filter(name="local-image").update(max_prompt_chars=19)
    assert len(CAT_PROMPT) == 19

    response = submit(owner_client, prompt=CAT_PROMPT)

    assert response.status_code == 201
    assert response.data["prompt"] == CAT_PROMPT


def test_submit_rejects_disabled_model(catalog, owner_client) -> None:
    ModelSpec.objects.filter(name="local-image").update(enabled=False)

    response = submit(owner_client)

    assert response.status_code == 400
    assert response.data["model"][0]["code"] == "unknown_model"
    assert Job.objects.count() == 0


def test_submit_fills_default_size(catalog, owner_client) -> None:
    response = submit(owner_client, params={})

    assert response.status_code == 201
    assert response.data["params"]["size"] == "1024x1024"
    assert response.data["params"]["n"] == 1


def test_submit_fills_default_duration(catalog, owner_client) -> None:
    response = submit(owner_client, model="local-video", params={"size": "360x640"})

    assert response.status_code == 201
    assert response.data["params"]["duration"] == 4


# Queue position


@pytest.mark.parametrize(("duration", "expected"), [(2, 200), (4, 400)])
def test_per_second_price_times_duration(
    catalog, owner, owner_client, duration, expected
) -> None:
    ModelSpec.objects.filter(name="local-video").update(price=100, price_unit="second")
    topup(owner, 1000, "test")
    params = {"size": "640x360", "duration": duration}

    response = submit(owner_client, model="local-video", params=params)

    assert response.status_code == 201
    assert response.data["price"] == f"{expected / 100:.2f}"
    assert hold_of(response.data["id"]).amount == expected
    assert balance_of(owner) == 1000 - expected


def test_queue_position_counts_ahead(catalog, owner_client) -> None:
    first = submit(owner_client)
    second = submit(owner_client)

    assert first.data["queue_position"] == 1
    assert second.data["queue_position"] == 2
    assert owner_client.get(job_url(first.data["id"])).data["queue_position"] == 1
    assert owner_client.get(job_url(second.data["id"])).data["queue_position"] == 2


def test_queue_position_includes_others(catalog, owner_client, stranger_client) -> None:
    submit(stranger_client)

    response = submit(owner_client)

    assert response.data["queue_position"] == 2


def test_queue_position_takes_turns(catalog, owner_client, stranger_client) -> None:
    # Claims take turns between users, so a later user's first job comes second.
    heavy = [submit(stranger_client).data["id"] for _ in range(5)]

    light = submit(owner_client).data

    assert light["queue_position"] == 2
    positions = [
        stranger_client.get(job_url(job_id)).data["queue_position"] for job_id in heavy
    ]
    assert positions == [1, 3, 4, 5, 6]


def test_queue_position_per_queue(catalog, owner_client, stranger_client) -> None:
    video_params = {"size": "640x360", "duration": 2}
    submit(stranger_client, model="local-video", params=video_params)

    image = submit(owner_client).data
    video = submit(owner_client, model="local-video", params=video_params).data

    assert image["queue_position"] == 1
    assert video["queue_position"] == 2


def test_job_list_positions(catalog, owner_client, stranger_client) -> None:
    submit(stranger_client)
    for _ in range(3):
        submit(owner_client)

    listed = owner_client.get("/api/jobs").data["results"]

    positions = sorted(job["queue_position"] for job in listed)
    assert positions == [2, 3, 4]


@pytest.mark.django_db(transaction=True)
def test_queue_position_null_when_done(catalog, owner_client) -> None:
    first = submit(owner_client).data["id"]
    second = submit(owner_client).data["id"]

    run_worker()

    assert owner_client.get(job_url(first)).data["queue_position"] is None
    assert owner_client.get(job_url(second)).data["queue_position"] is None


def test_queue_position_null_when_canceled(catalog, owner_client) -> None:
    first = submit(owner_client).data["id"]
    second = submit(owner_client).data["id"]

    owner_client.post(f"{job_url(first)}/cancel")

    assert owner_client.get(job_url(first)).data["queue_position"] is None
    assert owner_client.get(job_url(second)).data["queue_position"] == 1


# Idempotency-Key


def test_idempotency_key_returns_same_job(
    priced_image_model, owner, owner_client
) -> None:
    topup(owner, 1000, "test")
    headers = {"Idempotency-Key": "render-42"}

    first = submit(owner_client, headers=headers)
    second = submit(owner_client, headers=headers)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.data["id"] == first.data["id"]
    assert Job.objects.count() == 1
    assert Hold.objects.count() == 1
    assert balance_of(owner) == 500


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "another lighthouse"},
        {"params": {"size": "1024x1024"}},
        {"model": "local-video", "params": {"size": "640x360"}},
    ],
    ids=["prompt", "params", "model"],
)
def test_idempotency_key_other_request(catalog, owner_client, change) -> None:
    headers = {"Idempotency-Key": "render-42"}
    first = submit(owner_client, headers=headers)

    response = submit(owner_client, headers=headers, **change)

    assert response.status_code == 422
    assert response.data["code"] == "invalid_request"
    assert first.data["id"] in response.data["detail"]
    assert Job.objects.count() == 1


def test_idempotency_key_repeat_without_seed(catalog, owner_client) -> None:
    # The first job's generated seed is not part of the request, so a retry
    # without a seed is the same request.
    headers = {"Idempotency-Key": "render-42"}
    body = {"prompt": " a lighthouse ", "params": {"size": "1024x1024"}}

    first = submit(owner_client, headers=headers, **body)
    again = submit(owner_client, headers=headers, **body)

    assert again.status_code == 200
    assert again.data["id"] == first.data["id"]


def test_idempotency_key_too_long(catalog, owner_client) -> None:
    response = submit(owner_client, headers={"Idempotency-Key": "k" * 256})

    assert response.status_code == 400
    assert response.data["code"] == "invalid_request"
    assert "255" in response.data["detail"]
    assert Job.objects.count() == 0


def test_idempotency_keys_differ(catalog, owner_client) -> None:
    first = submit(owner_client, headers={"Idempotency-Key": "a"})
    second = submit(owner_client, headers={"Idempotency-Key": "b"})

    assert first.data["id"] != second.data["id"]
    assert Job.objects.count() == 2


def test_idempotency_key_per_user(catalog, owner_client, stranger_client) -> None:
    headers = {"Idempotency-Key": "render-42"}

    first = submit(owner_client, headers=headers)
    second = submit(stranger_client, headers=headers)

    assert second.status_code == 201
    assert second.data["id"] != first.data["id"]
    assert Job.objects.count() == 2


# Money


def test_submit_without_funds(priced_image_model, owner, owner_client) -> None:
    response = submit(owner_client)

    assert response.status_code == 402
    assert set(response.data) == {"detail", "code"}
    assert response.data["code"] == "insufficient_funds"
    assert "5.00" in response.data["detail"]
    assert Job.objects.count() == 0
    assert Hold.objects.count() == 0
    assert balance_of(owner) == 0


def test_submit_after_topup(priced_image_model, owner, owner_client) -> None:
    assert submit(owner_client).status_code == 402
    topup(owner, 1000, "test")

    response = submit(owner_client)

    assert response.status_code == 201
    assert response.data["price"] == "5.00"
    assert balance_of(owner) == 500
    hold = hold_of(response.data["id"])
    assert hold.amount == 500
    assert hold.status == Hold.Status.HELD
    assert owner_client.get("/api/auth/me").data["balance"] == "5.00"


def test_submit_prices_each_image(priced_image_model, owner, owner_client) -> None:
    topup(owner, 1000, "test")

    response = submit(owner_client, params={"size": "512x512", "n": 2})

    assert response.status_code == 201
    assert response.data["price"] == "10.00"
    assert balance_of(owner) == 0


def test_submit_rejects_price_over_balance(
    priced_image_model, owner, owner_client
) -> None:
    topup(owner, 999, "test")

    response = submit(owner_client, params={"size": "512x512", "n": 2})

    assert response.status_code == 402
    assert Job.objects.count() == 0
    assert balance_of(owner) == 999


@pytest.mark.django_db(transaction=True)
def test_completed_job_captures_hold(priced_image_model, owner, owner_client) -> None:
    topup(owner, 1000, "test")
    job_id = submit(owner_client).data["id"]

    run_worker()

    assert owner_client.get(job_url(job_id)).data["status"] == "completed"
    assert hold_of(job_id).status == Hold.Status.CAPTURED
    assert balance_of(owner) == 500


@pytest.mark.django_db(transaction=True)
def test_failed_job_releases_hold(
    priced_image_model, owner, owner_client, monkeypatch
) -> None:
    monkeypatch.setitem(registry.ADAPTERS, "local", f"{__name__}.BrokenAdapter")
    topup(owner, 1000, "test")
    job_id = submit(owner_client).data["id"]

    run_worker()

    job = owner_client.get(job_url(job_id)).data
    assert job["status"] == "failed"
    assert job["error"] == {"code": "provider_error", "message": "boom"}
    assert job["assets"] == []
    assert job["finished_at"] is not None
    assert hold_of(job_id).status == Hold.Status.RELEASED
    assert balance_of(owner) == 1000


# Cancel


def test_cancel_queued_job(priced_image_model, owner, owner_client) -> None:
    topup(owner, 1000, "test")
    job_id = submit(owner_client).data["id"]

    response = owner_client.post(f"{job_url(job_id)}/cancel")

    assert response.status_code == 200
    assert response.data["status"] == "canceled"
    assert response.data["finished_at"] is not None
    assert hold_of(job_id).status == Hold.Status.RELEASED
    assert balance_of(owner) == 1000


def test_cancel_twice_conflicts(priced_image_model, owner, owner_client) -> None:
    topup(owner, 1000, "test")
    job_id = submit(owner_client).data["id"]
    owner_client.post(f"{job_url(job_id)}/cancel")

    response = owner_client.post(f"{job_url(job_id)}/cancel")

    assert response.status_code == 409
    assert set(response.data) == {"detail", "code"}
    assert response.data["code"] == "not_cancelable"
    assert balance_of(owner) == 1000


@pytest.mark.django_db(transaction=True)
def test_cancel_completed_conflicts(catalog, owner_client) -> None:
    job_id = completed_job(owner_client)["id"]

    response = owner_client.post(f"{job_url(job_id)}/cancel")

    assert response.status_code == 409
    assert response.data["code"] == "not_cancelable"
    assert owner_client.get(job_url(job_id)).data["status"] == "completed"


@pytest.mark.django_db(transaction=True)
def test_canceled_job_never_runs(catalog, owner_client) -> None:
    job_id = submit(owner_client).data["id"]
    owner_client.post(f"{job_url(job_id)}/cancel")

    run_worker()

    job = owner_client.get(job_url(job_id)).data
    assert job["status"] == "canceled"
    assert job["assets"] == []
    assert job["started_at"] is None


# Access


@pytest.fixture
def owner_job(catalog, owner_client) -> str:
    return submit(owner_client).data["id"]


def test_list_shows_own_jobs(owner_client, owner_job) -> None:
    response = owner_client.get("/api/jobs")

    assert response.status_code == 200
    assert response.data["count"] == 1
    assert listed_ids(response) == {owner_job}


def test_list_hides_others_jobs(stranger_client, owner_job) -> None:
    mine = submit(stranger_client).data["id"]

    response = stranger_client.get("/api/jobs")

    assert response.status_code == 200
    assert listed_ids(response) == {mine}


def test_list_shows_staff_all_jobs(staff_client, owner_job) -> None:
    response = staff_client.get("/api/jobs")

    assert response.status_code == 200
    assert owner_job in listed_ids(response)


def test_list_newest_first(catalog, owner_client) -> None:
    first = submit(owner_client).data["id"]
    second = submit(owner_client).data["id"]

    results = owner_client.get("/api/jobs").data["results"]

    assert [job["id"] for job in results] == [second, first]


def test_list_limit_capped(catalog, owner_client, monkeypatch) -> None:
    monkeypatch.setattr(Pagination, "max_limit", 2)
    for _ in range(3):
        submit(owner_client)

    response = owner_client.get("/api/jobs?limit=1000")

    assert response.data["count"] == 3
    assert len(response.data["results"]) == 2
    assert response.data["next"] is not None


def test_list_rejects_anonymous(anonymous_client, owner_job) -> None:
    response = anonymous_client.get("/api/jobs")

    assert response.status_code == 401
    assert response.data["code"] == "not_authenticated"


def test_create_rejects_anonymous(catalog, anonymous_client) -> None:
    response = submit(anonymous_client)

    assert response.status_code == 401
    assert Job.objects.count() == 0


def test_detail_shows_owner(owner_client, owner_job) -> None:
    response = owner_client.get(job_url(owner_job))

    assert response.status_code == 200
    assert response.data["id"] == owner_job
    assert response.data["status"] == "queued"


def test_detail_hides_from_stranger(stranger_client, owner_job) -> None:
    response = stranger_client.get(job_url(owner_job))

    assert response.status_code == 404
    assert response.data["code"] == "not_found"


def test_detail_shows_staff(staff_client, owner_job) -> None:
    response = staff_client.get(job_url(owner_job))

    assert response.status_code == 200
    assert response.data["id"] == owner_job


def test_detail_rejects_anonymous(anonymous_client, owner_job) -> None:
    response = anonymous_client.get(job_url(owner_job))

    assert response.status_code == 401


def test_detail_unknown_id(owner_client, owner_job) -> None:
    response = owner_client.get(job_url("00000000-0000-0000-0000-000000000000"))

    assert response.status_code == 404


def test_cancel_hidden_from_stranger(stranger_client, owner_job) -> None:
    response = stranger_client.post(f"{job_url(owner_job)}/cancel")

    assert response.status_code == 404
    assert Job.objects.get(pk=owner_job).status == Job.Status.QUEUED
    assert hold_of(owner_job).status == Hold.Status.HELD


def test_cancel_rejects_anonymous(anonymous_client, owner_job) -> None:
    response = anonymous_client.post(f"{job_url(owner_job)}/cancel")

    assert response.status_code == 401
    assert Job.objects.get(pk=owner_job).status == Job.Status.QUEUED


# Query counts of the list


def list_jobs_counting(client, assert_queries, expected: int, count: int) -> None:
    with assert_queries(expected):
        response = client.get("/api/jobs")
    assert response.status_code == 200
    assert response.data["count"] == count


@pytest.mark.django_db(transaction=True)
def test_list_queries_fixed_completed(
    catalog, owner_client, django_assert_num_queries
) -> None:
    # The user (JWT), the page count, the jobs with their model, their assets.
    expected = 4
    for _ in range(3):
        submit(owner_client)
    run_worker()
    list_jobs_counting(owner_client, django_assert_num_queries, expected, 3)

    for _ in range(7):
        submit(owner_client)
    run_worker()
    list_jobs_counting(owner_client, django_assert_num_queries, expected, 10)


def test_list_queries_fixed_queued(
    catalog, owner_client, django_assert_num_queries
) -> None:
    # One more than for finished jobs: the queue positions of the whole page.
    expected = 5
    for _ in range(3):
        submit(owner_client)
    list_jobs_counting(owner_client, django_assert_num_queries, expected, 3)

    for _ in range(7):
        submit(owner_client)
    list_jobs_counting(owner_client, django_assert_num_queries, expected, 10)
