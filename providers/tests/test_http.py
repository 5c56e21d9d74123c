from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from providers.adapters.base import GenerationRequest
from providers.errors import ProviderError
from providers.http import VendorClient, redact, redact_url, retry_after_seconds
from providers.tests.fakes.scripted import RecordingContext, ScriptedVendor, closed_port
from providers.tests.fakes.server import Reply

API_KEY = "sk-test-4f9a2c71e0b6"
POLICY_BODY = {
    "error": {
        "message": "Your request was rejected by our safety system.",
        "type": "invalid_request_error",
        "code": "moderation_blocked",
    }
}


@pytest.fixture(scope="module")
def server():
    # One server for the module, because each shutdown waits about 0.5 s.
    with ScriptedVendor() as fake:
        yield fake


@pytest.fixture
def vendor(server: ScriptedVendor) -> ScriptedVendor:
    server.reset()
    return server


@pytest.fixture
def context() -> RecordingContext:
    return RecordingContext()


def make_client(
    base_url: str, context: RecordingContext, read_timeout: float = 2.0
) -> VendorClient:
    request = GenerationRequest(
        job_id="job-1",
        kind="image",
        remote_model="test-model",
        prompt="a lighthouse",
        params={},
        base_url=base_url + "/",
        api_key=API_KEY,
        provider_name="fake",
    )
    return VendorClient(
        request, context, connect_timeout=1.0, read_timeout=read_timeout
    )


def send_error(client: VendorClient, method: str = "GET", path: str = "/x"):
    with pytest.raises(ProviderError) as caught:
        client.send(method, path)
    return caught.value


@pytest.mark.parametrize(
    ("status", "body", "headers", "code", "retryable", "retry_after"),
    [
        (401, {"error": {"message": "Bad key"}}, {}, "provider_auth", False, None),
        (403, {"detail": "Forbidden"}, {}, "provider_auth", False, None),
        (429, {}, {"Retry-After": "7"}, "provider_rate_limited", True, 7.0),
        (429, {}, {"retry-after-ms": "1500"}, "provider_rate_limited", True, 1.5),
        (429, {}, {}, "provider_rate_limited", True, None),
        (408, {}, {}, "provider_error", True, None),
        (409, {}, {}, "provider_error", True, None),
        (500, {}, {}, "provider_error", True, None),
        (503, {}, {"Retry-After": "30"}, "provider_error", True, 30.0),
        (400, POLICY_BODY, {}, "provider_rejected", False, None),
        (
            400,
            {"errors": {"message": "输入内容违规"}},
            {},
            "provider_rejected",
            False,
            None,
        ),
        (
            422,
            {"detail": "Prompt blocked by content policy"},
            {},
            "provider_rejected",
            False,
            None,
        ),
        (
            400,
            {"error": {"message": "size is invalid"}},
            {},
            "invalid_request",
            False,
            None,
        ),
        (404, {"detail": "Model not found"}, {}, "invalid_request", False, None),
        (
            422,
            {"detail": [{"msg": "field required"}]},
            {},
            "invalid_request",
            False,
            None,
        ),
    ],
)
def test_status_classification(
    vendor, context, status, body, headers, code, retryable, retry_after
):
    vendor.route("/x", Reply(status, body, headers))
    error = send_error(make_client(vendor.url, context))

    assert error.code == code
    assert error.retryable is retryable
    assert error.retry_after == retry_after


def test_retry_after_http_date(vendor, context):
    when = datetime.now(UTC) + timedelta(seconds=60)
    vendor.route("/x", Reply(429, {}, {"Retry-After": format_datetime(when, True)}))
    error = send_error(make_client(vendor.url, context))

    assert error.code == "provider_rate_limited"
    assert 55 <= error.retry_after <= 61


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"message": "Billing hard limit reached"}}, "Billing hard limit"),
        ({"errors": {"message": "Invalid model id"}}, "Invalid model id"),
        ({"Message": "Invalid model id"}, "Invalid model id"),
        ({"message": "Invalid model id"}, "Invalid model id"),
        ({"detail": "Unknown model"}, "Unknown model"),
        (b"upstream said no", "upstream said no"),
    ],
)
def test_vendor_message_kept(vendor, context, body, expected):
    vendor.route("/x", Reply(400, body))
    error = send_error(make_client(vendor.url, context))

    assert expected in error.message
    assert "(HTTP 400)" in error.message


def test_auth_message_wording(vendor, context):
    vendor.route("/x", Reply(401, {"error": {"message": "Incorrect API key"}}))
    error = send_error(make_client(vendor.url, context))

    assert error.message == (
        "The provider rejected the API key (HTTP 401): Incorrect API key. "
        "Ask staff to check the provider account."
    )


def test_html_error_page_ignored(vendor, context):
    page = b"<html><body>502 Bad Gateway <a>Privacy policy</a></body></html>"
    vendor.route("/x", Reply(404, page, {"Content-Type": "text/html"}))
    error = send_error(make_client(vendor.url, context))

    assert error.code == "invalid_request"
    assert "<html" not in error.message


def test_long_vendor_message_shortened(vendor, context):
    vendor.route("/x", Reply(400, {"error": {"message": "x" * 5000}}))
    error = send_error(make_client(vendor.url, context))

    assert len(error.message) < 400


def test_connection_refused_retryable(context):
    client = make_client(f"http://127.0.0.1:{closed_port()}", context)
    error = send_error(client, "POST")

    assert error.code == "provider_error"
    assert error.retryable is True
    assert error.message == "Could not reach the provider."
    assert context.calls[0].status is None
    assert context.calls[0].error != ""


def test_read_timeout_get_retryable(vendor, context):
    vendor.route("/slow", Reply(200, {}), delay=0.5)
    error = send_error(make_client(vendor.url, context, 0.1), "GET", "/slow")

    assert error.code == "provider_timeout"
    assert error.retryable is True


def test_read_timeout_post_final(vendor, context):
    vendor.route("/slow", Reply(200, {}), delay=0.5)
    error = send_error(make_client(vendor.url, context, 0.1), "POST", "/slow")

    assert error.code == "provider_timeout"
    assert error.retryable is False


def test_per_call_read_timeout(vendor, context):
    vendor.route("/slow", Reply(200, {"ok": True}), delay=0.3)
    client = make_client(vendor.url, context, 0.1)
    response = client.send("GET", "/slow", read_timeout=2.0)

    assert response.json() == {"ok": True}


def test_sends_key_and_user_agent(vendor, context):
    vendor.route("/x", Reply(200, {}))
    make_client(vendor.url, context).send("GET", "/x")
    headers = vendor.requests[0].headers

    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert headers["User-Agent"] == "LightSource"


def test_no_key_no_authorization(vendor, context):
    vendor.route("/x", Reply(200, {}))
    request = GenerationRequest("job-1", "image", "m", "p", {}, base_url=vendor.url)
    VendorClient(request, context, connect_timeout=1, read_timeout=1).send("GET", "/x")

    assert "Authorization" not in vendor.requests[0].headers


def test_environment_proxy_ignored(vendor, context, monkeypatch):
    proxy = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    vendor.route("/x", Reply(200, {"ok": True}))
    response = make_client(vendor.url, context).send("GET", "/x")

    assert response.json() == {"ok": True}


def test_recorded_call_fields(vendor, context):
    vendor.route("/v1/tasks", Reply(200, {"task_id": "t-1"}), delay=0.05)
    make_client(vendor.url, context).send("POST", "/v1/tasks", json={"prompt": "hi"})
    call = context.calls[0]

    assert call.method == "POST"
    assert call.url == f"{vendor.url}/v1/tasks"
    assert call.status == 200
    assert call.duration_ms >= 50
    assert call.request_excerpt == '{"prompt": "hi"}'
    assert call.response_excerpt == '{"task_id": "t-1"}'
    assert call.error == ""


def test_recorded_calls_hide_key(vendor, context):
    echo = {"error": {"message": f"Key Bearer {API_KEY} is not allowed"}}
    vendor.route("/ok", Reply(200, {"echo": API_KEY}))
    vendor.route("/bad", Reply(401, echo))
    client = make_client(vendor.url, context)
    client.send("POST", f"/ok?key={API_KEY}", json={"api_key": API_KEY})
    error = send_error(client, "GET", "/bad")
    recorded = " ".join(str(asdict(call)) for call in context.calls)

    assert len(context.calls) == 2
    assert API_KEY not in recorded
    assert "Bearer" not in recorded
    assert API_KEY not in error.message


def test_query_secrets_redacted(vendor, context):
    vendor.route("/x", Reply(200, {}))
    make_client(vendor.url, context).send("GET", "/x?page=2&token=abc&sig=def")
    url = context.calls[0].url

    assert url.endswith("/x?page=2&token=***&sig=***")


def test_base64_shortened_in_excerpt(vendor, context):
    payload = "iVBORw0KGgo" + "A" * 10_000
    vendor.route("/x", Reply(200, {}))
    body = {"image": f"data:image/png;base64,{payload}", "prompt": "cat"}
    make_client(vendor.url, context).send("POST", "/x", json=body)
    excerpt = context.calls[0].request_excerpt

    assert len(excerpt) < 200
    assert "data:image/png;base64,iVBORw0KGgoAAAAAAAAAAAAA…[10011 chars]" in excerpt
    assert '"prompt": "cat"' in excerpt


def test_multipart_excerpt_names_only(vendor, context):
    vendor.route("/edits", Reply(200, {}))
    files = {"image": ("in.png", b"\x89PNG-secret-bytes", "image/png")}
    client = make_client(vendor.url, context)
    client.send("POST", "/edits", data={"prompt": "cat"}, files=files)
    excerpt = context.calls[0].request_excerpt

    assert excerpt == "multipart fields: prompt; files: image"


def test_absolute_url_same_host(vendor, context):
    vendor.route("/content", Reply(200, b"bytes"))
    response = make_client(vendor.url, context).send("GET", vendor.url + "/content")

    assert response.content == b"bytes"


def test_absolute_url_other_host(vendor, context):
    with ScriptedVendor(host="127.0.0.2") as other:
        other.route("/x", Reply(200, {}))
        error = send_error(make_client(vendor.url, context), "GET", other.url + "/x")

        assert error.code == "invalid_request"
        assert error.retryable is False
        assert other.requests == []


def test_stream_success_left_unread(vendor, context):
    chunks = [b"data: one\n\n", b"data: [DONE]\n\n"]
    vendor.route(
        "/s", Reply(200, headers={"Content-Type": "text/event-stream"}, chunks=chunks)
    )
    response = make_client(vendor.url, context).send("POST", "/s", stream=True)
    with response:
        lines = [line for line in response.iter_lines() if line]

    assert lines == [b"data: one", b"data: [DONE]"]
    assert context.calls[0].status == 200
    assert "text/event-stream" in context.calls[0].response_excerpt


def test_stream_error_body_read(vendor, context):
    body = b'{"error": {"message": "Server overloaded"}}'
    vendor.route("/s", Reply(503, chunks=[body]))
    error = send_error_stream(make_client(vendor.url, context))

    assert error.code == "provider_error"
    assert error.retryable is True
    assert "Server overloaded" in error.message
    assert "Server overloaded" in context.calls[0].response_excerpt


def send_error_stream(client: VendorClient) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        client.send("POST", "/s", stream=True)
    return caught.value


def test_retry_after_invalid():
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({"Retry-After": "-5"}) is None
    assert retry_after_seconds({}) is None


def test_rate_limit_reset_header(vendor, context):
    headers = {"x-ratelimit-reset-requests": "1m30s"}
    vendor.route("/x", Reply(429, {}, headers))
    error = send_error(make_client(vendor.url, context))

    assert error.retry_after == 90.0


def test_server_error_ignores_reset_header(vendor, context):
    headers = {"x-ratelimit-reset-requests": "1m30s"}
    vendor.route("/x", Reply(500, {}, headers))
    error = send_error(make_client(vendor.url, context))

    assert error.retry_after is None


def test_invalid_base_url(context):
    error = send_error(make_client("http://", context))

    assert error.code == "provider_error"
    assert error.retryable is False


def test_redact_secret_forms():
    text = f"Authorization: Bearer {API_KEY}; raw {API_KEY}"

    assert redact(text, [API_KEY, ""]) == "Authorization: ***; raw ***"


def test_redact_long_base64_run():
    run = "QUJD" * 50
    shortened = redact(f"b64_json={run}", [])

    assert shortened == f"b64_json={run[:24]}…[200 chars]"


def test_redact_keeps_short_text():
    assert redact("model=flux steps=30", []) == "model=flux steps=30"


def test_redact_url_signature():
    url = "https://cdn.test/a.png?X-Amz-Signature=abc&Expires=1&api_key=zz"

    assert redact_url(url, []) == (
        "https://cdn.test/a.png?X-Amz-Signature=***&Expires=1&api_key=***"
    )
