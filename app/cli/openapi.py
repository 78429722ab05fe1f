"""``stepline openapi``: the HTTP contract, as committed in ``openapi.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = ["DEFAULT_OPENAPI_PATH", "openapi", "openapi_document", "openapi_text"]

DEFAULT_OPENAPI_PATH = "openapi.json"


def _contract_settings() -> Settings:
    # The contract must not change with the machine it is generated on: only the values given
    # here count, never STEPLINE_* variables. Nothing connects to the database.
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    from app.settings import Settings

    class ContractSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    return ContractSettings(pipelines=[], demo_pipelines=True, entry_points=False)


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, built with fixed settings (demos on, nothing else)."""
    from app.main import create_app

    return create_app(_contract_settings()).openapi()


def openapi_text() -> str:
    """``openapi_document()`` as committed in ``openapi.json``: FastAPI's key order, indented."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def openapi(
    output: Annotated[
        str, typer.Argument(help="The file to write, or - for stdout.", metavar="PATH")
    ] = DEFAULT_OPENAPI_PATH,
) -> None:
    """Write the OpenAPI document of the API."""
    data = openapi_text().encode()
    if output == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(output).write_bytes(data)
