"""Helpers that submit jobs over HTTP and run the worker, for API tests."""

from urllib.parse import urlsplit

from generation.worker import Worker

IMAGE_PROMPT = "a lighthouse at dusk"


def submit(client, model: str = "local-image", prompt: str = IMAGE_PROMPT, **extra):
    """Submit a job with POST /api/jobs. `params` defaults to a 512x512 image.

    Other keyword arguments, such as `headers`, go to the test client.
    """
    body = {"model": model, "prompt": prompt}
    body["params"] = extra.pop("params", {"size": "512x512"})
    return client.post("/api/jobs", body, format="json", **extra)


def run_worker() -> None:
    """Run every due job to its end in this process.

    Needs `django_db(transaction=True)`, because the worker closes stale database
    connections, which would end the wrapping transaction of an ordinary test.
    """
    Worker(burst=True).run()


def completed_job(client, **submit_arguments) -> dict:
    """Submit a job, run the worker and return the job JSON."""
    job_id = submit(client, **submit_arguments).data["id"]
    run_worker()
    return client.get(f"/api/jobs/{job_id}").data


def fetch(client, url: str, **extra):
    """GET the path and query of an absolute URL that the API returned."""
    parts = urlsplit(url)
    return client.get(f"{parts.path}?{parts.query}", **extra)


def body_of(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content
