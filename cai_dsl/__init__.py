"""cai-dsl: a declarative language and compiler for Constitutional AI."""

__version__ = "0.1.0"
