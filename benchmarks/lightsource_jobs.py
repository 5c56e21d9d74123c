"""Queue LightSource benchmark jobs through generation.services.submit_job.

Run from the project folder with DJANGO_SETTINGS_MODULE=lightsource.settings
and DATABASE_URL pointing at the benchmark database:

    python -m benchmarks.lightsource_jobs --kind noop --count 2000 --users 50

Each job is an ordinary submit: validation, the Job row, a Hold of price 0 and
its ledger entry, and a NOTIFY after commit. The last line on stdout is a JSON
summary with the seconds the submits took.
"""

import argparse
import json
import time

import django

# The catalog rows the benchmark adds, by --kind: provider kind (an adapter
# that worker_bench.py registers through EXTRA_ADAPTERS) and remote model name.
KINDS = {
    "noop": ("bench_noop", "noop"),
    "sleep": ("bench_sleep", "sleep"),
}


def ensure_catalog(kind: str, base_url: str):
    """Create or update the provider and model of `kind` and return the model name."""
    from providers.models import ModelSpec, Provider

    provider_kind, remote_name = KINDS[kind]
    provider, _ = Provider.objects.update_or_create(
        name=f"bench-{kind}",
        defaults={"kind": provider_kind, "base_url": base_url, "enabled": True},
    )
    model, _ = ModelSpec.objects.update_or_create(
        name=f"bench-{kind}",
        defaults={
            "kind": "image",
            "provider": provider,
            "remote_name": remote_name,
            "price": 0,
            "enabled": True,
        },
    )
    return model.name


def ensure_users(count: int) -> list:
    """Return `count` benchmark users, each with a wallet, creating missing ones."""
    from django.contrib.auth import get_user_model

    from billing.services import wallet_for

    user_model = get_user_model()
    users = []
    for index in range(count):
        user, created = user_model.objects.get_or_create(
            username=f"bench-user-{index}",
            defaults={"email": f"bench-user-{index}@example.com"},
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        wallet_for(user)
        users.append(user)
    return users


def submit_all(model_name: str, users: list, count: int, spacing: float) -> float:
    """Submit `count` jobs round-robin over `users` and return the seconds taken.

    With `spacing` above 0, submit N starts `spacing` * N seconds after the
    first, so an idle worker finds one job at a time.
    """
    from generation.services import submit_job

    started = time.monotonic()
    for index in range(count):
        if spacing:
            delay = started + index * spacing - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        user = users[index % len(users)]
        submit_job(user, model_name, f"benchmark job {index}", {})
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description="Queue LightSource benchmark jobs.")
    parser.add_argument("--kind", choices=sorted(KINDS), required=True)
    parser.add_argument("--count", type=int, required=True, help="Jobs to submit.")
    parser.add_argument(
        "--users", type=int, default=1, help="Users the jobs are spread over."
    )
    parser.add_argument(
        "--base-url", default="", help="Provider base URL (the fake vendor's)."
    )
    parser.add_argument(
        "--spacing",
        type=float,
        default=0.0,
        help="Seconds between submits; 0 submits back to back.",
    )
    options = parser.parse_args()

    django.setup()
    model_name = ensure_catalog(options.kind, options.base_url)
    users = ensure_users(options.users)
    seconds = submit_all(model_name, users, options.count, options.spacing)
    print(json.dumps({"submitted": options.count, "seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
