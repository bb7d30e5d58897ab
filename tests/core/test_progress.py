"""One progress interface: a context manager yielding advance(n); silent when disabled or not a TTY."""

import io

from cai_dsl.core import progress as progress_module
from cai_dsl.core.progress import progress, progress_enabled


def test_disabled_bars_are_no_ops(monkeypatch):
    assert not progress_enabled(False)
    monkeypatch.setenv("CAI_NO_PROGRESS", "1")
    assert not progress_enabled(True)
    with progress(3, "label") as advance:
        advance(1, loss="0.1")
        with advance.task("stage", 2, rate_unit="tok") as sub:
            sub(1, rate=10)


def test_not_a_tty_draws_nothing(monkeypatch, capsys):
    monkeypatch.delenv("CAI_NO_PROGRESS", raising=False)
    monkeypatch.setattr(progress_module.sys, "stderr", io.StringIO())
    assert not progress_enabled(True)


def test_a_drawn_bar_counts_and_nests(monkeypatch):
    monkeypatch.setattr(progress_module, "progress_enabled", lambda enabled=True: enabled)
    with progress(4, "records", unit="prompts", done=1) as advance:
        display = advance._display
        with advance.task("critiques", 3, rate_unit="tok") as sub:
            sub(2, rate=40)
            sub(1, rate=2)
            stage = display.tasks[-1]
            assert stage.completed == 3 and stage.fields["_rate"] == 42
        assert len(display.tasks) == 1  # the nested bar is removed
        advance(2, loss="0.25")
        assert display.tasks[0].completed == 3 and display.tasks[0].fields["loss"] == "0.25"
