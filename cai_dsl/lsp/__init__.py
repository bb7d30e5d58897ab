"""A language server for `.const` files (``cai lsp``), built on pygls: the front end,
checker and formatter of cai-dsl behind the Language Server Protocol.

:mod:`.server` wires the requests; :mod:`.analysis` (parse, resolve, names) runs on each
change; :mod:`.semantic` runs the SMT checks in a worker process within a time budget;
:mod:`.index` records where every name is defined and used, for :mod:`.hover`,
:mod:`.completion`, :mod:`.symbols` and navigation; :mod:`.actions` proposes edits.
"""
