"""Pipelines registered at start-up: from settings paths, from the ``stepline.pipelines``
entry points and the demos; what fails to load stops the app; the catalogue shows them."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.pipelines.loading import PipelineLoadError, load_pipelines
from app.settings import Settings

from .loadable import ReportParams

pytestmark = pytest.mark.anyio

LOADABLE = "tests.app.loadable"
DEMOS = ["upload", "train", "flaky"]


class Plugins:
    """Modules and installed distributions made up by a test, in a directory on sys.path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def module(self, source: str, stem: str = "plugin") -> str:
        """Write a module (a fresh name each time) and return its name."""
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        self.modules.append(name)
        return name

    def distribution(self, entry_points: dict[str, str]) -> str:
        """An installed distribution declaring ``entry_points`` in ``stepline.pipelines``,
        as ``importlib.metadata`` finds it: a ``.dist-info`` directory on sys.path."""
        name = f"stepline_plugin_{uuid.uuid4().hex[:8]}"
        info = self.root / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8"
        )
        lines = [f"{key} = {value}" for key, value in entry_points.items()]
        (info / "entry_points.txt").write_text(
            "[stepline.pipelines]\n" + "\n".join(lines) + "\n", encoding="utf-8"
        )
        return name


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Plugins]:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    made = Plugins(root)
    yield made
    for name in made.modules:
        sys.modules.pop(name, None)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'stepline.db'}",
        pipelines=[LOADABLE, f"{LOADABLE}:ingest"],
        entry_points=False,
        workers=1,
        poll_seconds=0.05,
    )


def load(*paths: str, entry_points: bool = False) -> dict[str, Any]:
    return load_pipelines(paths, demos=False, use_entry_points=entry_points)


def catalogue_settings(tmp_path: Path, *paths: str, entry_points: bool = False) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'catalogue.db'}",
        pipelines=list(paths),
        entry_points=entry_points,
    )


async def get_catalogue(settings: Settings) -> dict[str, dict[str, Any]]:
    """``GET /pipelines`` of an app built from ``settings`` (the catalogue needs no store)."""
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://stepline.test") as c:
        response = await c.get("/pipelines")
    assert response.status_code == 200, response.text
    return {p["name"]: p for p in response.json()["items"]}


def step_names(pipeline: Any) -> list[str]:
    return [s.name for s in pipeline.default_steps()]


# -- from settings paths --------------------------------------------------------------------


def test_a_module_path_loads_every_pipeline_its_PIPELINES_lists() -> None:
    found = load(LOADABLE)

    assert list(found) == ["report", "stamp"]
    report = found["report"]
    assert report.title == "report"
    assert report.description == "Render a report from gathered figures."
    assert report.params_model is ReportParams
    assert step_names(report) == ["gather", "render"]


def test_a_module_without_PIPELINES_offers_the_actions_it_defines(
    plugins: Plugins,
) -> None:
    module = plugins.module(
        """
        from steps import ActionParams, BaseAction
        from tests.app.loadable import ReportAction, Stamp  # imported: not offered


        class ArchiveAction(BaseAction[ActionParams]):
            def setup_steps(self, registry):
                registry.register(Stamp())


        class HelperAction(BaseAction[ActionParams]):
            '''Defines no steps: not a pipeline.'''
        """
    )

    assert list(load(module)) == ["archive"]


def test_a_module_attr_list_of_steps_is_a_pipeline_named_by_the_attr() -> None:
    (ingest,) = load(f"{LOADABLE}:ingest").values()

    assert ingest.name == "ingest"
    assert ingest.description == "Steps: fetch, store"
    assert [(s.name, s.weight, s.can_rollback) for s in ingest.default_steps()] == [
        ("fetch", 0.25, True),
        ("store", 0.75, False),
    ]


@pytest.mark.parametrize("attr", ["Stamp", "STAMP"])
def test_a_step_class_or_instance_is_a_one_step_pipeline_named_by_the_step(
    attr: str,
) -> None:
    (stamp,) = load(f"{LOADABLE}:{attr}").values()

    assert stamp.name == "stamp"
    assert stamp.description == "Stamp the run with the time."
    assert step_names(stamp) == ["stamp"]


def test_a_base_action_subclass_is_a_pipeline_named_after_the_class() -> None:
    (report,) = load(f"{LOADABLE}:ReportAction").values()

    assert report.name == "report"
    assert step_names(report) == ["gather", "render"]


def test_an_action_name_keeps_acronyms_together(plugins: Plugins) -> None:
    module = plugins.module(
        """
        from steps import ActionParams, BaseAction
        from tests.app.loadable import Stamp


        class OCRScanAction(BaseAction[ActionParams]):
            def setup_steps(self, registry):
                registry.register(Stamp())
        """
    )

    assert list(load(module)) == ["ocr_scan"]


# -- from entry points ----------------------------------------------------------------------


async def test_entry_points_of_installed_distributions_register_pipelines(
    plugins: Plugins, tmp_path: Path
) -> None:
    module = plugins.module(
        """
        from tests.app.loadable import Fetch, Store

        STEPS = [Fetch(), Store()]
        """
    )
    plugins.distribution({"nightly": f"{module}:STEPS", "reports": f"{LOADABLE}:ReportAction"})

    found = load(entry_points=True)
    catalogue = await get_catalogue(catalogue_settings(tmp_path, entry_points=True))

    assert step_names(found["nightly"]) == ["fetch", "store"]  # a list: named by the entry
    assert step_names(found["report"]) == ["gather", "render"]  # an action: by its class
    assert {"nightly", "report"} <= set(catalogue)
    assert "nightly" not in load(entry_points=False)


async def test_entry_points_are_off_when_settings_say_so(plugins: Plugins, tmp_path: Path) -> None:
    plugins.distribution({"reports": f"{LOADABLE}:ReportAction"})

    catalogue = await get_catalogue(catalogue_settings(tmp_path, entry_points=False))

    assert list(catalogue) == DEMOS


def test_an_entry_point_that_fails_to_load_stops_the_app_and_is_named(
    plugins: Plugins, tmp_path: Path
) -> None:
    plugins.distribution({"broken": "no_such_plugin_module:PIPELINE"})

    with pytest.raises(PipelineLoadError) as caught:
        create_app(catalogue_settings(tmp_path, entry_points=True))

    message = str(caught.value)
    assert "entry point 'broken'" in message
    assert "no_such_plugin_module:PIPELINE" in message
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


# -- what fails to load ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("tests.app.no_such_module", "No module named"),
        (f"{LOADABLE}:missing", "has no attribute 'missing'"),
        (f"{LOADABLE}:NOT_A_PIPELINE", "does not define a pipeline"),
    ],
)
def test_a_pipeline_that_cannot_be_loaded_stops_create_app_and_is_named(
    tmp_path: Path, path: str, says: str
) -> None:
    with pytest.raises(PipelineLoadError) as caught:
        create_app(catalogue_settings(tmp_path, f"{LOADABLE}:ingest", path))

    assert repr(path) in str(caught.value)
    assert says in str(caught.value)


def test_a_module_that_raises_on_import_stops_create_app_and_keeps_the_cause(
    plugins: Plugins, tmp_path: Path
) -> None:
    module = plugins.module("raise RuntimeError('misconfigured plugin')\n", stem="exploding")

    with pytest.raises(PipelineLoadError, match="misconfigured plugin") as caught:
        create_app(catalogue_settings(tmp_path, module))

    assert repr(module) in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_pipeline_whose_steps_cannot_be_registered_stops_create_app(
    plugins: Plugins, tmp_path: Path
) -> None:
    module = plugins.module(
        """
        from tests.app.loadable import Fetch

        twice = [Fetch(), Fetch()]
        """
    )

    with pytest.raises(PipelineLoadError, match=f"{module}:twice"):
        create_app(catalogue_settings(tmp_path, f"{module}:twice"))


def test_a_duplicate_name_is_an_error_naming_both_sources(plugins: Plugins, tmp_path: Path) -> None:
    module = plugins.module(
        """
        from steps import ActionParams, BaseAction
        from tests.app.loadable import Stamp


        class TrainAction(BaseAction[ActionParams]):
            def setup_steps(self, registry):
                registry.register(Stamp())
        """
    )

    with pytest.raises(PipelineLoadError) as caught:
        create_app(catalogue_settings(tmp_path, module))

    message = str(caught.value)
    assert "'train'" in message
    assert module in message
    assert "app.pipelines.demos" in message


def test_an_entry_point_reusing_a_configured_name_is_an_error_naming_both(
    plugins: Plugins,
) -> None:
    plugins.distribution({"ingest": f"{LOADABLE}:ingest"})

    with pytest.raises(PipelineLoadError) as caught:
        load(f"{LOADABLE}:ingest", entry_points=True)

    message = str(caught.value)
    assert "'ingest'" in message
    assert "entry point 'ingest'" in message
    assert f"{LOADABLE}:ingest" in message


# -- the catalogue over HTTP ----------------------------------------------------------------


async def test_get_pipelines_lists_demos_then_configured_pipelines_in_order(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/pipelines")

    assert response.status_code == 200
    assert [p["name"] for p in response.json()["items"]] == [*DEMOS, "report", "stamp", "ingest"]


async def test_every_listed_pipeline_is_what_get_pipeline_shows(
    client: httpx.AsyncClient,
) -> None:
    listed = (await client.get("/pipelines")).json()["items"]

    for pipeline in listed:
        one = await client.get(f"/pipelines/{pipeline['name']}")
        assert one.status_code == 200
        assert one.json() == pipeline


async def test_the_upload_demo_shows_its_four_steps_in_order(client: httpx.AsyncClient) -> None:
    upload = (await client.get("/pipelines/upload")).json()

    assert upload["title"] == "Upload files"
    assert upload["description"].startswith("Initialize a workspace")
    steps = upload["steps"]
    assert [s["name"] for s in steps] == ["initialize", "validate", "upload", "cleanup"]
    assert [s["weight"] for s in steps] == pytest.approx([0.05, 0.1, 0.8, 0.05])
    assert [s["can_rollback"] for s in steps] == [True, False, True, False]
    assert {(s["retry"], s["timeout_seconds"], s["irreversible"]) for s in steps} == {
        (None, None, False)
    }
    schema = upload["params_schema"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["files"]["default"] == 5
    assert schema["properties"]["files"]["minimum"] == 1
    assert schema["properties"]["step_seconds"]["maximum"] == 60


async def test_the_train_demo_weighs_its_steps_20_60_20(client: httpx.AsyncClient) -> None:
    train = (await client.get("/pipelines/train")).json()

    assert [(s["name"], s["weight"]) for s in train["steps"]] == [
        ("dataset", pytest.approx(0.2)),
        ("train", pytest.approx(0.6)),
        ("upload", pytest.approx(0.2)),
    ]
    assert set(train["params_schema"]["properties"]) == {"step_seconds", "epochs"}


async def test_the_flaky_demo_can_roll_back_every_step(client: httpx.AsyncClient) -> None:
    flaky = (await client.get("/pipelines/flaky")).json()

    assert [(s["name"], s["weight"], s["can_rollback"]) for s in flaky["steps"]] == [
        ("prepare", pytest.approx(0.3), True),
        ("transform", pytest.approx(0.3), True),
        ("publish", pytest.approx(0.4), True),
    ]


async def test_a_pipeline_shows_retry_timeout_pivot_and_its_params_schema(
    client: httpx.AsyncClient,
) -> None:
    report = (await client.get("/pipelines/report")).json()

    assert report["title"] == "report"
    assert report["description"] == "Render a report from gathered figures."
    gather, render = report["steps"]
    assert gather == {
        "name": "gather",
        "weight": 0.25,
        "can_rollback": True,
        "irreversible": False,
        "timeout_seconds": None,
        "retry": {
            "max_attempts": 3,
            "initial_delay": 0.1,
            "multiplier": 2.0,
            "max_delay": 30.0,
            "jitter": 0.1,
            "retry_on": ["ConnectionError"],
        },
    }
    assert render == {
        "name": "render",
        "weight": 0.75,
        "can_rollback": False,
        "irreversible": True,
        "timeout_seconds": 30.0,
        "retry": None,
    }
    assert report["params_schema"] == ReportParams.model_json_schema()
    assert report["params_schema"]["properties"]["pages"]["description"] == (
        "How many pages to render."
    )


async def test_an_unknown_pipeline_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/pipelines/nope")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("pipeline-not-found")


# -- STEPLINE_PIPELINES ---------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [k for k in os.environ if k.startswith("STEPLINE_")]:
        monkeypatch.delenv(key)
    return monkeypatch


@pytest.mark.parametrize(
    ("value", "paths"),
    [
        (LOADABLE, [LOADABLE]),
        (f"{LOADABLE}, {LOADABLE}:ingest", [LOADABLE, f"{LOADABLE}:ingest"]),
        (f" {LOADABLE}:ingest ,, ", [f"{LOADABLE}:ingest"]),
        ("", []),
    ],
)
def test_stepline_pipelines_is_a_comma_separated_list(
    clean_env: pytest.MonkeyPatch, value: str, paths: list[str]
) -> None:
    clean_env.setenv("STEPLINE_PIPELINES", value)

    assert Settings().pipelines == paths


async def test_settings_from_the_environment_register_the_pipelines_they_name(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("STEPLINE_PIPELINES", f"{LOADABLE}:ingest,{LOADABLE}:Stamp")
    clean_env.setenv("STEPLINE_DEMO_PIPELINES", "false")
    clean_env.setenv("STEPLINE_ENTRY_POINTS", "0")
    clean_env.setenv("STEPLINE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'env.db'}")

    settings = Settings()
    catalogue = await get_catalogue(settings)

    assert settings.pipelines == [f"{LOADABLE}:ingest", f"{LOADABLE}:Stamp"]
    assert (settings.demo_pipelines, settings.entry_points) == (False, False)
    assert list(catalogue) == ["ingest", "stamp"]


def test_without_stepline_pipelines_only_the_demos_are_configured(
    clean_env: pytest.MonkeyPatch,
) -> None:
    settings = Settings()

    assert settings.pipelines == []
    assert settings.demo_pipelines is True
    assert settings.entry_points is True
