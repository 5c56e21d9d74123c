"""Helpers for whole job path tests against the fake OpenAI servers."""

import io

import av
from django.utils import timezone
from PIL import Image

from assets.models import Asset
from assets.services import create_asset, prepare_file
from billing.models import Hold
from billing.services import topup
from generation.models import Job, ProviderCall
from generation.tests.factories import body_of, fetch
from generation.worker import Worker
from providers.adapters.base import GenerationRequest
from providers.models import ModelSpec, Provider
from providers.tests.fakes.media import png_bytes
from providers.tests.fakes.openai_images import API_KEY

PRICE = 30
WALLET = 1000


def add_provider(name: str, kind: str, base_url: str) -> Provider:
    return Provider.objects.create(
        name=name, kind=kind, base_url=base_url, api_key=API_KEY, enabled=True
    )


def add_image_model(provider: Provider) -> ModelSpec:
    return ModelSpec.objects.create(
        name="gpt-image-1",
        kind=ModelSpec.Kind.IMAGE,
        provider=provider,
        remote_name="gpt-image-1",
        price=PRICE,
        sizes=["1024x1024", "1536x1024", "1024x1536"],
        max_n=4,
        deadline_seconds=60,
        supports=["reference_asset"],
    )


def add_video_model(provider: Provider, deadline_seconds: int = 60) -> ModelSpec:
    return ModelSpec.objects.create(
        name="sora-2",
        kind=ModelSpec.Kind.VIDEO,
        provider=provider,
        remote_name="sora-2",
        price=PRICE,
        sizes=["1280x720", "720x1280"],
        durations=[4, 8, 12],
        deadline_seconds=deadline_seconds,
        supports=["reference_asset"],
    )


def fund(user) -> None:
    topup(user, WALLET, "test")


def submit(client, model: str, params: dict, prompt: str = "a lighthouse") -> str:
    """POST /api/jobs and return the new job's id."""
    body = {"model": model, "prompt": prompt, "params": params}
    response = client.post("/api/jobs", body, format="json")
    assert response.status_code == 201, response.data
    return response.data["id"]


def run_worker() -> None:
    Worker(burst=True).run()


def job_json(client, job_id: str) -> dict:
    response = client.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200
    return response.data


def make_due(job_id: str) -> None:
    Job.objects.filter(pk=job_id).update(run_after=timezone.now())


def hold_status(job_id: str) -> str:
    return Hold.objects.get(job_id=job_id).status


def calls_of(job_id: str) -> list[ProviderCall]:
    return list(ProviderCall.objects.filter(job_id=job_id))


def call_texts(job_id: str) -> str:
    """Join every stored field of the job's vendor call records."""
    fields = ("url", "request_excerpt", "response_excerpt", "error")
    return "\n".join(
        str(getattr(call, name)) for call in calls_of(job_id) for name in fields
    )


def asset_content(client, asset: dict) -> bytes:
    response = fetch(client, asset["url"])
    assert response.status_code == 200
    return body_of(response)


def decode_image(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


def count_video_frames(content: bytes) -> int:
    with av.open(io.BytesIO(content)) as container:
        return sum(1 for _ in container.decode(video=0))


def library_image(owner) -> Asset:
    """Store a PNG in the owner's library, as an upload would."""
    content = png_bytes(size="96x64", seed=9)
    info, preview = prepare_file(content, "image/png")
    return create_asset(owner, content, info, preview)


class RecordingContext:
    """A JobContext that records what the adapter reports, for direct calls."""

    def __init__(self, stop_after_polls: int | None = None, fake=None) -> None:
        self.reports: list[int] = []
        self.task_ids: list[str] = []
        # How many status polls the fake had seen when the task id was saved.
        self.polls_at_save: int | None = None
        self.calls: list = []
        self.stop_after_polls = stop_after_polls
        self.fake = fake

    def progress(self, percent: int) -> None:
        self.reports.append(percent)

    def save_task_id(self, task_id: str) -> None:
        self.task_ids.append(task_id)
        self.polls_at_save = len(self.fake.poll_times) if self.fake else None

    def record_call(self, call) -> None:
        self.calls.append(call)

    def should_stop(self) -> bool:
        if self.stop_after_polls is None:
            return False
        return len(self.fake.poll_times) >= self.stop_after_polls


def direct_request(kind: str, base_url: str, **params) -> GenerationRequest:
    """A request as the worker builds it, for calling an adapter directly."""
    return GenerationRequest(
        job_id="direct",
        kind=kind,
        remote_model="sora-2" if kind == "video" else "gpt-image-1",
        prompt="a lighthouse",
        params=params,
        base_url=base_url,
        api_key=API_KEY,
        provider_name="openai",
        limits={"deadline_seconds": 60},
    )
