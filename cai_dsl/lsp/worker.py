"""The semantic-check worker process: one JSON request per line on stdin, one JSON answer
per line on stdout. It runs the checker exactly as `cai lint` does; the server kills it
when a request runs past its time budget (a solver query cannot be interrupted otherwise).

Request: ``{"root", "overlay": {path: text}, "deployments": [..] | null, "semantic", "operational"}``.
Answer: ``{"diagnostics": [...]}`` or ``{"error": "..."}``; the first line is ``{"ready": true}``.
"""

from __future__ import annotations

import json
import sys

from cai_dsl.check.checker import check
from cai_dsl.lang.parser import parse_text
from cai_dsl.lang.resolver import resolve
from cai_dsl.lsp.analysis import lint_config_for


def answer(request: dict) -> dict:
    """The diagnostics of one request (configuration of the root's project applied)."""
    root = request["root"]
    overlay = request.get("overlay") or {}
    try:
        constitution = resolve(root, overlay.get(root), overlay)
        found = check(
            constitution,
            request.get("deployments"),
            semantic=request.get("semantic", True),
            operational=request.get("operational", True),
        )
        found = lint_config_for(root).apply(found)
    except Exception as exc:  # reported to the server, which shows it as a diagnostic
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"diagnostics": [d.model_dump(mode="json") for d in found]}


def serve(stdin=None, stdout=None) -> None:
    """Answer requests until stdin closes."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    parse_text("", "<warm-up>")  # build the parser before the first budget starts
    stdout.write(json.dumps({"ready": True}) + "\n")
    stdout.flush()
    for line in stdin:
        try:
            request = json.loads(line)
        except ValueError as exc:
            reply = {"error": f"bad request: {exc}"}
        else:
            reply = answer(request)
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve()
