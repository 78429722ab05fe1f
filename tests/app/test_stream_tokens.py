"""Stream tokens: one stream, once, for minutes, as ``?token=`` on event streams only, and
never in a log."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.main import create_app
from app.security.keys import KEY_PATTERN
from app.security.logs import scrub
from app.security.tokens import TOKEN_PATTERN
from app.settings import Settings
from tests.app.conftest import WAIT, services_of, wait_until_finished
from tests.app.keys import Clock, bearer, create_key, stored_keys
from tests.app.live import open_stream, serve
from tests.databases import table_counts

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
RUN = {"pipeline": "controlled", "params": {"logs": 1}}


async def finished_run(client: httpx.AsyncClient, app: FastAPI, key: str) -> str:
    response = await client.post("/runs", json=RUN, headers=bearer(key))
    run_id: str = response.json()["id"]
    assert await wait_until_finished(app, run_id) == "succeeded"
    return run_id


async def mint(client: httpx.AsyncClient, key: str, path: str) -> dict[str, str]:
    response = await client.post(path, headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def assert_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_opens_its_runs_stream_once(client: httpx.AsyncClient, app: FastAPI) -> None:
    key = await create_key(app, "viewer", "read", "run")
    run_id = await finished_run(client, app, key)

    minted = await mint(client, key, f"/runs/{run_id}/stream-token")
    first = await client.get(minted["url"])
    again = await client.get(minted["url"])

    assert TOKEN_PATTERN.fullmatch(minted["token"])
    assert minted["url"] == f"/runs/{run_id}/events?token={minted['token']}"
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/event-stream")
    assert "run.snapshot" in first.text
    assert "run.succeeded" in first.text
    assert_401(again)


async def test_a_fresh_token_resumes_a_stream_after_the_last_event_seen(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    # A browser's EventSource cannot send Last-Event-ID with a new token's URL: the query
    # parameter carries the position instead.
    key = await create_key(app, "viewer", "read", "run")
    run_id = await finished_run(client, app, key)
    last = (await client.get(f"/runs/{run_id}", headers=bearer(key))).json()["last_event_id"]

    minted = await mint(client, key, f"/runs/{run_id}/stream-token")
    resumed = await client.get(
        f"/runs/{run_id}/events", params={"token": minted["token"], "last_event_id": last - 1}
    )

    assert resumed.status_code == 200
    assert re.findall(r"^id: (\d+)\r?$", resumed.text, re.M) == [str(last)]
    assert "run.snapshot" not in resumed.text


async def test_a_token_is_for_its_own_stream_only(client: httpx.AsyncClient, app: FastAPI) -> None:
    key = await create_key(app, "viewer", "read", "run")
    one = await finished_run(client, app, key)
    other = await finished_run(client, app, key)
    for_one = (await mint(client, key, f"/runs/{one}/stream-token"))["token"]
    for_all = (await mint(client, key, "/events/stream-token"))["token"]

    assert_401(await client.get(f"/runs/{other}/events", params={"token": for_one}))
    assert_401(await client.get(f"/runs/{one}/events", params={"token": for_all}))
    assert_401(await client.get("/events", params={"token": for_one}))
    # Refused for the wrong stream, a token is not used up.
    assert (await client.get(f"/runs/{one}/events", params={"token": for_one})).status_code == 200


async def test_a_token_is_refused_on_every_route_but_the_streams(
    client: httpx.AsyncClient, app: FastAPI, store_url: str
) -> None:
    key = await create_key(app, "viewer", "read", "run")
    run_id = await finished_run(client, app, key)
    token = (await mint(client, key, f"/runs/{run_id}/stream-token"))["token"]
    counts = table_counts(store_url, ("runs", "events"))

    for method, path in [
        ("GET", f"/runs/{run_id}"),
        ("GET", f"/runs/{run_id}/logs"),
        ("POST", f"/runs/{run_id}/cancel"),
        ("POST", f"/runs/{run_id}/stream-token"),
        ("GET", "/runs"),
        ("POST", "/runs"),
        ("GET", "/pipelines"),
        ("GET", "/metrics"),
        ("POST", "/events/stream-token"),
    ]:
        response = await client.request(method, path, params={"token": token}, json=RUN)
        assert_401(response)

    assert table_counts(store_url, ("runs", "events")) == counts
    assert (await client.get(f"/runs/{run_id}/events", params={"token": token})).status_code == 200


async def test_a_token_expires_within_five_minutes(client: httpx.AsyncClient, app: FastAPI) -> None:
    tokens = services_of(app).auth.tokens
    clock = Clock(datetime.now(UTC).timestamp())
    tokens.clock = clock
    key = await create_key(app, "viewer", "read", "run")
    run_id = await finished_run(client, app, key)

    minted = await mint(client, key, f"/runs/{run_id}/stream-token")
    late = await mint(client, key, f"/runs/{run_id}/stream-token")
    clock.advance(299)
    in_time = await client.get(minted["url"])
    clock.advance(1)

    lifetime = datetime.fromisoformat(minted["expires_at"]).timestamp() - (clock.now - 300)
    assert 0 < lifetime <= 300
    assert in_time.status_code == 200
    assert_401(await client.get(late["url"]))


async def test_forged_and_tampered_tokens_are_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    key = await create_key(app, "viewer", "read", "run")
    run_id = await finished_run(client, app, key)
    token = (await mint(client, key, f"/runs/{run_id}/stream-token"))["token"]
    body, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]

    for forged in (f"{body}.{flipped}", f"{body}x.{signature}", body, "slt_", "x", token[4:]):
        assert_401(await client.get(f"/runs/{run_id}/events", params={"token": forged}))


async def test_a_revoked_keys_tokens_stop_working(client: httpx.AsyncClient, app: FastAPI) -> None:
    await create_key(app, "admin", "admin")
    key = await create_key(app, "viewer", "read", "run")
    run_id = await finished_run(client, app, key)
    token = (await mint(client, key, f"/runs/{run_id}/stream-token"))["token"]

    await services_of(app).auth.keys.revoke("viewer")

    assert_401(await client.get(f"/runs/{run_id}/events", params={"token": token}))


async def test_minting_needs_a_read_key_that_may_see_the_run(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await create_key(app, "owner", "read", "run")
    other = await create_key(app, "other", "read")
    runner = await create_key(app, "runner", "run")
    run_id = await finished_run(client, app, owner)

    assert_401(await client.post(f"/runs/{run_id}/stream-token"))
    assert (
        await client.post(f"/runs/{run_id}/stream-token", headers=bearer(runner))
    ).status_code == 403
    assert (
        await client.post(f"/runs/{run_id}/stream-token", headers=bearer(other))
    ).status_code == 404
    assert (await client.post("/events/stream-token", headers=bearer(other))).status_code == 200


async def test_the_secret_that_signs_tokens_is_kept_for_the_next_start(settings: Settings) -> None:
    first = create_app(settings)
    async with first.router.lifespan_context(first):
        secret = services_of(first).auth.tokens.secret
    second = create_app(settings)
    async with second.router.lifespan_context(second):
        assert services_of(second).auth.tokens.secret == secret
    configured = create_app(
        settings.model_copy(update={"stream_token_secret": SecretStr("s3cret")})
    )
    async with configured.router.lifespan_context(configured):
        assert services_of(configured).auth.tokens.secret == b"s3cret"
    assert secret is not None
    assert len(secret) >= 32


def test_scrubbing_redacts_tokens_and_key_secrets_only() -> None:
    key = "sl_0123456789ab_" + "s" * 43
    line = f'127.0.0.1:5 - "GET /events?type=run.failed&token=slt_abc.def&x=1 HTTP/1.1" 200 {key}'

    assert scrub(line) == (
        '127.0.0.1:5 - "GET /events?type=run.failed&token=[redacted]&x=1 HTTP/1.1" 200 '
        "sl_0123456789ab_[redacted]"
    )
    assert scrub("nothing secret here") == "nothing secret here"


async def test_no_key_or_token_reaches_the_logs_of_a_live_server(
    settings: Settings, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    admin, viewer = await stored_keys(store_url, ("admin", ("admin",)), ("viewer", ("read", "run")))
    secrets: list[str] = [admin, viewer]
    caplog.set_level(logging.DEBUG)
    app = create_app(settings)
    async with (
        serve(app, log_config=None, log_level="debug", access_log=True) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=WAIT) as client,
    ):
        run_id = (await client.post("/runs", json=RUN, headers=bearer(viewer))).json()["id"]
        for _ in range(2):
            minted = (
                await client.post(f"/runs/{run_id}/stream-token", headers=bearer(viewer))
            ).json()
            secrets.append(minted["token"])
            async with open_stream(client, minted["url"]) as stream:
                await stream.read_to_end(WAIT)
            assert (await client.get(minted["url"])).status_code == 401  # used
            assert (
                await client.get(f"/runs/{run_id}", params={"token": minted["token"]})
            ).status_code == 401
        events = (await client.post("/events/stream-token", headers=bearer(admin))).json()
        secrets.append(events["token"])
        async with open_stream(client, events["url"]) as stream:
            await stream.read_until(lambda e: e["retry"] is not None, WAIT)
        await client.get("/runs", headers=bearer(viewer + "x"))
        await client.get("/metrics", headers=bearer(admin))

    # Everything the server side logged (the test's own HTTP client logs its URLs itself).
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    text = "\n".join(f"{r.name} {r.getMessage()} {r.__dict__}" for r in server)
    assert '"GET /runs/' in text  # the access log was captured
    assert "token=[redacted]" in text
    assert [s for s in secrets if s in text] == []
    assert KEY_PATTERN.findall(text) == []
    assert TOKEN_PATTERN.findall(text) == []
    assert re.findall(r"sl_[0-9a-f]{12}_(?!\[redacted\])\S", text) == []
