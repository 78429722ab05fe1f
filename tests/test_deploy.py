"""The scale-out configuration (deploy/): the compose file and nginx's configuration keep
their promises: pinned images, health checks, real settings, replicas that wait for their
database and Ray cluster, event streams passed through unbuffered.

Neither Docker nor nginx is needed: the files are read, not run.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from packaging.requirements import Requirement

from app.errors import PROBLEM_BASE
from app.settings import Settings
from tests.test_dockerfile import DOCKERFILE, instructions

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
NGINX_CONF = DEPLOY / "nginx.conf"

API_REPLICAS = ("api-1", "api-2")
RAY_NODES = ("ray-head", "ray-worker")
STEPLINE_SERVICES = (*API_REPLICAS, *RAY_NODES)  # built from the project's Dockerfile
SERVICES = {"postgres", *RAY_NODES, *API_REPLICAS, "nginx"}
CLUSTER_EXTRA = "ray-cluster"
# The Ray executor's settings: the compose file sets them for the executor, which reads them
# from Settings once it is part of the app. Until then they are the only STEPLINE_* names
# here that Settings may lack.
RAY_EXECUTOR_SETTINGS = {"STEPLINE_EXECUTOR", "STEPLINE_RAY_ADDRESS"}
SSE_LOCATIONS = ("= /events", r"~ ^/runs/[^/]+/events$")


# --- the compose file -------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, written as a mapping or as a list of NAME=value, with the
    compose variables (``${NAME:-default}``) as compose sets them when the environment of
    ``docker compose`` has none: their defaults."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): INTERPOLATION.sub(lambda m: m[2] or "", str(v)) for k, v in env.items()}


def pins() -> dict[str, str]:
    """constraints.txt: each package's version, by its normalised name."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    found = [line.split("==", 1) for line in lines if "==" in line and not line.startswith("#")]
    return {normalised(name): version for name, version in found}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extras() -> dict[str, list[str]]:
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(found["optional-dependencies"])


def command(service: dict[str, Any]) -> list[str]:
    given = service["command"]
    return shlex.split(given) if isinstance(given, str) else [str(word) for word in given]


def option(words: list[str], name: str) -> str:
    (value,) = [w.split("=", 1)[1] for w in words if w.startswith(f"{name}=")]
    return value


def test_the_stack_has_its_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_every_image_is_pinned_by_a_version_tag(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        assert re.search(r"\d", tag), f"{name}: {image} names no version"


def test_every_service_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable", False), name
        test = check["test"]
        assert isinstance(test, list), f"{name}: the exec form, not a shell string"
        assert test[0] == "CMD", name
        if test[1:3] == ["python", "-c"]:
            compile(test[3], f"<{name} healthcheck>", "exec")  # the one-liner is valid Python
        assert re.fullmatch(r"\d+s", check["timeout"]), name


def test_the_api_replicas_use_postgres_and_ray_and_listen_on_all_interfaces(
    services: dict[str, dict[str, Any]],
) -> None:
    ray_head = command(services["ray-head"])

    for name in API_REPLICAS:
        env = environment(services[name])
        assert env["STEPLINE_DATABASE_URL"].startswith("postgresql+asyncpg://"), name
        assert "@postgres:5432/" in env["STEPLINE_DATABASE_URL"], name
        assert env["STEPLINE_EXECUTOR"] == "ray", name
        client_port = option(ray_head, "--ray-client-server-port")
        assert env["STEPLINE_RAY_ADDRESS"] == f"ray://ray-head:{client_port}", name
        assert env["STEPLINE_HOST"] == "0.0.0.0", name


def test_the_api_replicas_wait_for_a_healthy_database_and_ray_cluster(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in API_REPLICAS:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["ray-head"]["condition"] == "service_healthy", name
        assert any("/readyz" in word for word in services[name]["healthcheck"]["test"]), name


def test_the_api_replicas_outlive_their_graceful_shutdown(
    services: dict[str, dict[str, Any]],
) -> None:
    grace = Settings().graceful_shutdown_seconds

    for name in API_REPLICAS:
        stop = services[name]["stop_grace_period"]
        assert seconds(stop) > grace, f"{name}: Docker kills it after {stop}"


def test_the_replicas_and_the_ray_nodes_are_one_build_of_the_project_with_the_cluster_extra(
    services: dict[str, dict[str, Any]],
) -> None:
    known = extras()
    builds = [services[name]["build"] for name in STEPLINE_SERVICES]

    # The same context, Dockerfile and arguments: one image, so that the Ray clients (the
    # replicas) and the cluster run the same Python, Ray and Stepline.
    assert all(build == builds[0] for build in builds)
    assert all("image" not in services[name] for name in STEPLINE_SERVICES)
    build = builds[0]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
    wanted = [e.strip() for e in build["args"]["EXTRAS"].split(",")]
    assert set(wanted) <= set(known), "no such extra in pyproject.toml"
    assert "postgres" in wanted
    assert CLUSTER_EXTRA in wanted  # ray[default]: the dashboard, the agent, Ray Client


def test_the_ray_extras_bring_ray_client_and_the_clusters_services_at_the_pinned_version() -> None:
    known, pinned = extras(), pins()

    assert pinned["ray"]
    assert f"ray[client]=={pinned['ray']}" in known["ray"]  # grpcio: ray:// needs it
    assert f"ray[default]=={pinned['ray']}" in known[CLUSTER_EXTRA]
    assert f"ray[client]=={pinned['ray']}" in known["dev"]  # the tests use Ray Client
    for extra in ("ray", CLUSTER_EXTRA):
        assert any(d.startswith("asyncpg==") for d in known[extra]), "the workers write runs"


def test_constraints_pin_every_package_ray_default_and_client_need_here() -> None:
    ray = importlib.metadata.distribution("ray")
    pinned = pins()
    needed = set()
    for requirement in map(Requirement, ray.requires or []):
        marker = requirement.marker
        if marker is not None and any(
            marker.evaluate({"extra": extra}) for extra in ("default", "client")
        ):
            needed.add(normalised(requirement.name))

    assert ray.version == pinned["ray"]
    assert {"grpcio", "aiohttp", "aiohttp-cors", "opencensus", "py-spy"} <= needed
    assert needed - set(pinned) == set()


def test_the_dockerfile_installs_the_postgres_extra_by_default() -> None:
    dockerfile = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    (arg,) = [i for i in dockerfile if i.keyword == "ARG" and i.args.startswith("EXTRAS=")]
    (install,) = [i for i in dockerfile if i.keyword == "RUN" and "-c constraints.txt" in i.args]

    assert "postgres" in arg.args.removeprefix("EXTRAS=").split(",")
    assert dockerfile.index(arg) < dockerfile.index(install)
    assert "os.environ['EXTRAS']" in install.args
    assert "optional-dependencies" in install.args


def test_every_stepline_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    prefix = Settings.model_config.get("env_prefix", "")
    settings = {prefix.upper() + name.upper() for name in Settings.model_fields}
    used = {k for service in services.values() for k in environment(service)}
    used = {k for k in used if k.startswith("STEPLINE_")}

    assert used - settings - RAY_EXECUTOR_SETTINGS == set()
    for name in API_REPLICAS:  # and Settings takes their values
        given = {
            k.removeprefix(prefix.upper()).lower(): v
            for k, v in environment(services[name]).items()
            if k in settings
        }
        Settings(**given)


def test_the_replicas_and_the_ray_nodes_name_the_same_pipelines(
    services: dict[str, dict[str, Any]],
) -> None:
    # The replicas load them, the workers import them for each task: one value, set once.
    values = {name: environment(services[name]).get("STEPLINE_PIPELINES") for name in
              STEPLINE_SERVICES}  # fmt: skip
    raw = {str(services[name]["environment"]["STEPLINE_PIPELINES"]) for name in STEPLINE_SERVICES}

    assert None not in values.values(), values
    assert len(set(values.values())) == 1, values
    assert raw == {"${STEPLINE_PIPELINES:-}"}  # from the environment of docker compose


def test_the_workers_reach_the_replicas_database_and_take_its_url_from_the_tasks(
    services: dict[str, dict[str, Any]],
) -> None:
    urls = {environment(services[name])["STEPLINE_DATABASE_URL"] for name in API_REPLICAS}
    (url,) = urls
    host = url.split("@", 1)[1].split(":", 1)[0]
    worker = services["ray-worker"]

    assert host in services  # a service of this file, on its network
    assert "networks" not in worker
    assert all("networks" not in services[n] for n in API_REPLICAS)
    # The URL comes with each task (app/runs/remote.py): a worker's own would be ignored.
    assert "STEPLINE_DATABASE_URL" not in environment(worker)
    assert worker["depends_on"][host]["condition"] == "service_healthy"


def test_the_ray_nodes_run_as_the_images_user_with_room_for_the_object_store(
    services: dict[str, dict[str, Any]],
) -> None:
    (user,) = [i.args for i in instructions(DOCKERFILE.read_text()) if i.keyword == "USER"]

    assert user.split(":")[0] not in {"root", "0"}
    for name in RAY_NODES:
        node = services[name]
        assert "user" not in node, name  # the image's
        assert node["shm_size"] == "1gb", name
        assert environment(node)["RAY_USAGE_STATS_ENABLED"] == "0", name
        # the Dockerfile's HEALTHCHECK asks the API: each node has one of its own
        assert not any("/healthz" in word for word in node["healthcheck"]["test"]), name
    # Its client server's processes for the replicas start reliably (app/runs/ray_executor.py)
    assert environment(services["ray-head"])["GRPC_ENABLE_FORK_SUPPORT"] == "false"
    head_check = " ".join(services["ray-head"]["healthcheck"]["test"])
    assert "8265/api/gcs_healthz" in head_check  # the dashboard: ray[default]
    assert "52365/api/local_raylet_healthz" in head_check  # the node's agent: ray[default]
    worker_check = " ".join(services["ray-worker"]["healthcheck"]["test"])
    assert "52365/api/local_raylet_healthz" in worker_check
    assert "load_pipelines" in worker_check
    assert "STEPLINE_PIPELINES" in worker_check


def test_the_ray_workers_join_the_head(services: dict[str, dict[str, Any]]) -> None:
    head, worker = command(services["ray-head"]), command(services["ray-worker"])

    assert head[:2] == ["ray", "start"]
    assert "--head" in head
    assert "--block" in head
    assert worker[:2] == ["ray", "start"]
    assert "--block" in worker
    assert option(worker, "--address") == f"ray-head:{option(head, '--port')}"
    assert option(head, "--num-cpus") == "0"  # the workers execute the runs
    assert services["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert services["ray-worker"]["deploy"]["replicas"] == 2


def test_nginx_serves_its_configuration_in_front_of_the_replicas(
    services: dict[str, dict[str, Any]],
) -> None:
    nginx = services["nginx"]
    mounts = [volume.split(":") for volume in nginx["volumes"]]

    assert [(DEPLOY / m[0]).resolve() for m in mounts if m[1] == "/etc/nginx/nginx.conf"] == [
        NGINX_CONF
    ]
    assert [str(port) for port in nginx["ports"]] == ["8080:8080"]
    assert {name: d["condition"] for name, d in nginx["depends_on"].items()} == dict.fromkeys(
        API_REPLICAS, "service_healthy"
    )
    # only nginx is reachable from outside, and the Ray dashboard from this machine only
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert set(published) == {"nginx", "ray-head"}
    assert all(str(p).startswith("127.0.0.1:") for p in published["ray-head"])


# --- nginx.conf -------------------------------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = field(default=None)

    def all(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]

    def one(self, name: str) -> Directive:
        (found,) = self.all(name)
        return found

    def value(self, name: str) -> str:
        return " ".join(self.one(name).args)

    def walk(self) -> Iterator[Directive]:
        for d in self.block or []:
            yield d
            yield from d.walk()


TOKEN = re.compile(r"""\s+|\#[^\n]*|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|[{};]|[^\s{};'"]+""")


def parse_nginx(text: str) -> Directive:
    """nginx's configuration as a tree of directives (quotes, comments and blocks; enough to
    read this file, not every configuration nginx accepts)."""
    root = Directive("main", [], [])
    stack = [root]
    words: list[str] = []
    position = 0
    while position < len(text):
        token = TOKEN.match(text, position)
        assert token, f"nginx.conf: cannot read {text[position : position + 20]!r}"
        position = token.end()
        word = token.group()
        if word.isspace() or word.startswith("#"):
            continue
        if word in ("{", ";"):
            assert words, f"nginx.conf: {word} without a directive"
            directive = Directive(words[0], words[1:], [] if word == "{" else None)
            assert stack[-1].block is not None
            stack[-1].block.append(directive)
            if word == "{":
                stack.append(directive)
            words = []
        elif word == "}":
            assert not words, f"nginx.conf: }} ends {words} without a ;"
            assert len(stack) > 1, "nginx.conf: unbalanced }"
            stack.pop()
        else:
            words.append(unquote(word) if word[0] in "'\"" else word)
    assert len(stack) == 1, "nginx.conf: unterminated block"
    assert not words, f"nginx.conf: {words} without a ;"
    return root


ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t"}


def unquote(word: str) -> str:
    """A quoted word as nginx reads it: quotes dropped, escapes replaced."""
    return re.sub(r"\\(.)", lambda m: ESCAPES.get(m[1], m[0]), word[1:-1])


UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value: str | int) -> float:
    """An nginx or compose duration (``60s``, ``1m``, ``500ms``, a bare number of seconds)."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", str(value))
    assert parts, value
    assert "".join(n + u for n, u in parts) == str(value), value
    return sum(float(n) * UNITS[u or "s"] for n, u in parts)


@pytest.fixture(scope="module")
def nginx() -> Directive:
    return parse_nginx(NGINX_CONF.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def server(nginx: Directive) -> Directive:
    return nginx.one("http").one("server")


def locations(server: Directive) -> dict[str, Directive]:
    return {" ".join(d.args): d for d in server.all("location")}


def test_the_nginx_reader_knows_quotes_comments_blocks_and_durations() -> None:
    tree = parse_nginx('a \'x { y; }\\n\' "b\\"c"; # d { \ne { f g; }\n')

    assert tree.block == [
        Directive("a", ["x { y; }\n", 'b"c']),
        Directive("e", [], [Directive("f", ["g"])]),
    ]
    assert seconds("60s") == seconds("1m") == seconds(60) == 60
    assert seconds("1m30s") == 90


def test_the_upstream_holds_both_replicas_with_idle_connections_kept(
    nginx: Directive, services: dict[str, dict[str, Any]]
) -> None:
    (upstream,) = nginx.one("http").all("upstream")
    servers = [d.args[0] for d in upstream.all("server")]
    uvicorn_keep_alive = inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"]

    assert servers == [f"{name}:{Settings().port}" for name in API_REPLICAS]
    assert int(upstream.value("keepalive")) > 0
    # nginx must drop an idle connection before uvicorn does, or reuse one it is closing
    assert seconds(upstream.value("keepalive_timeout")) < uvicorn_keep_alive.default
    assert "timeout_keep_alive" not in (ROOT / "app" / "cli" / "server.py").read_text()
    for location in locations(nginx.one("http").one("server")).values():
        if location.all("proxy_pass"):
            assert location.value("proxy_pass") == f"http://{upstream.args[0]}"


def test_the_sse_locations_are_exactly_the_apps_event_streams(server: Directive) -> None:
    paths = json.loads((ROOT / "openapi.json").read_text())["paths"]
    streams = {
        re.sub(r"\{[^}]+\}", "01ABC", path)
        for path, item in paths.items()
        if "text/event-stream" in item.get("get", {}).get("responses", {}).get("200", {})
        .get("content", {})
    }  # fmt: skip
    others = {re.sub(r"\{[^}]+\}", "01ABC", path) for path in paths} - streams

    def sse(path: str) -> bool:
        exact, regex = SSE_LOCATIONS
        return (
            path == exact.removeprefix("= ")
            or re.search(regex.removeprefix("~ "), path) is not None
        )

    assert streams == {"/events", "/runs/01ABC/events"}
    assert all(sse(path) for path in streams)
    assert not any(sse(path) for path in others | {"/runs/a/b/events", "/runs/a/events/x"})
    assert set(SSE_LOCATIONS) <= set(locations(server))


@pytest.mark.parametrize("where", SSE_LOCATIONS)
def test_event_streams_are_passed_through_unbuffered_and_outlast_the_pings(
    server: Directive, where: str
) -> None:
    location = locations(server)[where]
    headers = {d.args[0]: d.args[1] for d in location.all("proxy_set_header")}

    assert location.value("proxy_buffering") == "off"
    assert location.value("proxy_cache") == "off"
    assert location.value("proxy_http_version") == "1.1"
    assert headers["Connection"] == ""
    # a stream that is only pinging must not be cut: at least two pings per timeout
    timeout = seconds(location.value("proxy_read_timeout"))
    assert timeout >= 2 * Settings().sse_ping_seconds
    # the replicas' "X-Accel-Buffering: no" must be obeyed, not ignored
    ignored = [d for d in server.walk() if d.name == "proxy_ignore_headers"]
    assert not any("X-Accel-Buffering" in d.args for d in ignored)
    assert not any(d.name == "gzip" and d.args == ["on"] for d in server.walk())


def test_every_location_passes_the_forwarded_headers(server: Directive) -> None:
    # A proxy_set_header in a location replaces every one of the server's.
    for where, location in locations(server).items():
        if not location.all("proxy_pass"):
            continue
        scope = location if location.all("proxy_set_header") else server
        headers = {d.args[0]: d.args[1] for d in scope.all("proxy_set_header")}
        assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for", where
        assert headers["X-Forwarded-Proto"] == "$scheme", where
        assert headers["Host"] == "$host", where
        assert headers["Connection"] == "", where


def test_the_body_limit_is_the_apps_and_slow_clients_are_cut_short(server: Directive) -> None:
    limit = server.value("client_max_body_size")
    size = int(limit[:-1]) * {"k": 1024, "m": 1024 * 1024}[limit[-1].lower()]

    assert size == Settings().max_body_bytes
    assert seconds(server.value("client_header_timeout")) <= 15
    assert seconds(server.value("client_body_timeout")) <= 15
    assert seconds(server.value("proxy_connect_timeout")) <= 10
    assert seconds(locations(server)["/"].value("proxy_read_timeout")) <= 60


def test_the_errors_nginx_answers_itself_are_problem_documents(server: Directive) -> None:
    handlers = {int(d.args[0]): d.args[-1] for d in server.all("error_page")}
    named = locations(server)

    assert set(handlers) == {413, 502, 504}
    for status, handler in handlers.items():
        location = named[handler]
        code, text = location.one("return").args
        document = json.loads(text.replace("$problem_instance", '"/runs"'))
        assert location.value("default_type") == "application/problem+json"
        assert int(code) == document["status"] == status
        assert document["type"].startswith(PROBLEM_BASE)
        assert set(document) == {"type", "title", "status", "detail", "instance"}
        if status == 413:
            assert str(Settings().max_body_bytes) in document["detail"]


def test_the_problem_instance_is_the_path_only_when_it_is_safe_in_json(nginx: Directive) -> None:
    (mapping,) = [
        d for d in nginx.one("http").all("map") if d.args == ["$uri", "$problem_instance"]
    ]
    rules = {d.name: d.args[0] for d in mapping.block or []}
    (rule,) = [rule for rule in rules if rule.startswith("~")]
    pattern = rule.removeprefix("~").replace("\\z", "\\Z")  # PCRE's \z is Python's \Z

    assert rules[rule] == '"$uri"'
    assert rules["default"] == "null"
    for path in ["/runs", "/runs/01ABC/events", "/pipelines/my-pipeline_2"]:
        assert re.search(pattern, path), path
    for path in ['/runs/a"b', "/runs/a\\b", "/runs/a\nb", "/runs\n", "/runs/\u00e9"]:
        assert not re.search(pattern, path), path
