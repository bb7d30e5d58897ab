"""`cai lsp`: the language server for editors (stdio, or TCP on loopback)."""

from __future__ import annotations

import importlib
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("lsp")(lsp_command)


def lsp_command(
    tcp: Optional[int] = typer.Option(None, "--tcp", metavar="PORT", help="listen on 127.0.0.1:PORT instead of stdio"),
    budget: float = typer.Option(10.0, "--budget", min=0.1, help="seconds for the semantic checks of one file"),
) -> None:
    """Run the language server (diagnostics, hover, navigation, completion, formatting) for editors."""
    if tcp is not None and not 0 < tcp < 65536:
        raise typer.BadParameter("PORT must be between 1 and 65535", param_hint="--tcp")
    # cai_dsl.lsp is a sibling of the CLI in the top layer (the layer contract keeps them
    # independent); it is loaded by name, and only for this command, which needs pygls.
    server = importlib.import_module("cai_dsl.lsp.server")
    server.serve(tcp_port=tcp, budget_s=budget)
