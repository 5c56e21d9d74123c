"""A fake ModelScope API-Inference server for the async image task protocol.

Replies follow ModelScope's shapes: a submit returns {"task_id", "request_id"},
a poll returns {"task_status", ...} and a finished task lists image URLs that
this server serves itself, under /output/.
"""

import time
import uuid
from dataclasses import dataclass, field

from providers.tests.fakes.media import png_bytes
from providers.tests.fakes.server import FakeVendor, Recorded, Reply

SUBMIT_PATH = "/v1/images/generations"
TASK_PREFIX = "/v1/tasks/"
OUTPUT_PREFIX = "/output/"

FAILED_MESSAGE = "Model inference failed, please try again later."
REFUSED_MESSAGE = "输入内容可能包含敏感信息"
SCENARIOS = (
    "ok",
    "slow",
    "failed",
    "refused",
    "auth",
    "rate_limited",
    "server_error",
    "task_not_found_once",
    "poll_error_once",
    "never_finishes",
    "result_403",
    "result_html",
    "sync",
)
# Statuses returned by the polls before the last one, per scenario.
WAITING = {
    "ok": ["PENDING", "RUNNING"],
    "slow": ["PENDING"] + ["RUNNING"] * 14 + ["PROCESSING"],
}
NOT_FOUND_BODY = {
    "request_id": "8f3e0000-0000-0000-0000-000000000404",
    "errors": {"code": "NotFound", "message": "task not found"},
}
HTML_PAGE = b"<!doctype html><html><body><h1>Access denied</h1></body></html>"


@dataclass
class Task:
    task_id: str
    polls: int = 0
    poll_times: list[float] = field(default_factory=list)


class ModelScopeFake(FakeVendor):
    """A fake ModelScope server playing one of SCENARIOS.

    `png` is the image that every task produces.
    """

    def __init__(self, scenario: str = "ok") -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"Unknown ModelScope scenario {scenario!r}.")
        super().__init__(scenario)
        self.tasks: dict[str, Task] = {}
        self.png = png_bytes("64x64", seed=11)

    def add_task(self) -> str:
        """Register a task as if it had been submitted earlier and return its id."""
        task_id = str(uuid.uuid4())
        with self.lock:
            self.tasks[task_id] = Task(task_id)
        return task_id

    def polls(self) -> list[float]:
        """Return the monotonic times of every poll of a known task, in order."""
        with self.lock:
            return sorted(t for task in self.tasks.values() for t in task.poll_times)

    def handle(self, request: Recorded) -> Reply:
        if request.method == "POST" and request.path == SUBMIT_PATH:
            return self._submit()
        if request.method == "GET" and request.path.startswith(TASK_PREFIX):
            return self._poll(request.path.removeprefix(TASK_PREFIX))
        if request.method == "GET" and request.path.startswith(OUTPUT_PREFIX):
            return self._output()
        return Reply(404, {"errors": {"message": "Not Found"}})

    def _submit(self) -> Reply:
        if self.scenario == "auth":
            body = {"errors": {"message": "Invalid token, please check your token."}}
            return Reply(401, body)
        if self.scenario == "rate_limited":
            body = {"errors": {"message": "Request limit exceeded for today."}}
            return Reply(429, body, headers={"Retry-After": "7"})
        if self.scenario == "server_error":
            return Reply(500, {"errors": {"message": "Internal server error"}})

        task_id = self.add_task()
        if self.scenario == "sync":
            return Reply(200, {"images": [{"url": self._image_url(task_id)}]})
        return Reply(200, {"task_id": task_id, "request_id": str(uuid.uuid4())})

    def _poll(self, task_id: str) -> Reply:
        with self.lock:
            task = self.tasks.get(task_id)
            if task is not None:
                task.polls += 1
                task.poll_times.append(time.monotonic())
        if task is None:
            return Reply(404, NOT_FOUND_BODY)
        return self._task_reply(task)

    def _task_reply(self, task: Task) -> Reply:
        scenario = self.scenario
        polls = task.polls
        if scenario == "task_not_found_once":
            if polls == 1:
                return Reply(404, NOT_FOUND_BODY)
            polls -= 1
        if scenario == "poll_error_once":
            if polls == 1:
                return Reply(502, b"<html><body>502 Bad Gateway</body></html>")
            polls -= 1
        if scenario == "never_finishes":
            return Reply(200, {"task_status": "RUNNING"})

        waiting = WAITING.get(scenario, WAITING["ok"])
        if polls <= len(waiting):
            return Reply(200, {"task_status": waiting[polls - 1]})
        return Reply(200, self._final_status(task))

    def _final_status(self, task: Task) -> dict:
        if self.scenario == "failed":
            errors = {"code": "InternalError", "message": FAILED_MESSAGE}
            return {"task_status": "FAILED", "errors": errors}
        if self.scenario == "refused":
            errors = {"code": "DataInspectionFailed", "message": REFUSED_MESSAGE}
            return {"task_status": "FAILED", "errors": errors}
        return {
            "task_status": "SUCCEED",
            "output_images": [self._image_url(task.task_id)],
        }

    def _image_url(self, task_id: str) -> str:
        return f"{self.url}{OUTPUT_PREFIX}{task_id}.png"

    def _output(self) -> Reply:
        if self.scenario == "result_403":
            body = b"<Error><Code>AccessDenied</Code><Message>Request has expired"
            return Reply(
                403, body + b"</Message></Error>", {"Content-Type": "text/xml"}
            )
        if self.scenario == "result_html":
            return Reply(200, HTML_PAGE, {"Content-Type": "image/png"})
        return Reply(200, self.png, {"Content-Type": "image/png"})
