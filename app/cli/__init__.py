"""The ``stepline`` command line: ``serve``, ``keys``, ``demo`` and ``openapi`` run the
service's own code; ``run``, ``watch``, ``runs``, ``show``, ``cancel``, ``logs`` and
``pipelines`` talk to a server through ``stepline_client`` (the public HTTP API only).

Modules, one job each: ``_root`` (global options, commands, ``main``), ``runs`` (run, watch,
cancel), ``views`` (runs, show, pipelines), ``logs``, ``server`` (serve, demo), ``keys``,
``openapi``; ``follow`` picks a renderer (``live`` on a terminal, ``plain`` lines otherwise,
``ndjson`` for ``--json``) fed by ``state``; ``report`` writes the end of a run; ``render``
the tables; ``inputs`` parses the command line; ``remote`` holds the server and maps its
errors to exit codes (``exit_codes``).
"""

from ._root import cli, main
from .exit_codes import ExitCode
from .openapi import openapi_document, openapi_text

__all__ = ["ExitCode", "cli", "main", "openapi_document", "openapi_text"]
