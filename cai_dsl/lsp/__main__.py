"""``python -m cai_dsl.lsp``: the language server on stdio (``cai lsp`` has the options)."""

from cai_dsl.lsp.server import serve

if __name__ == "__main__":
    serve()
