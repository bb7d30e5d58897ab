"""Shared training-job helpers: which trl/transformers checkpoint a rerun resumes from."""

from __future__ import annotations

import json

from cai_dsl.run.train.job import complete_checkpoints, resume_checkpoint


def _checkpoint(folder, step: int, *, complete: bool = True) -> None:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))


def test_killed_while_saving_the_incomplete_checkpoint_is_removed_and_the_last_complete_one_resumed(tmp_path):
    # kill -9 during DPO's save of checkpoint-2 left it without trainer_state.json (a fresh-clone CI run found it:
    # transformers picked checkpoint-2 and failed with FileNotFoundError)
    _checkpoint(tmp_path, 1)
    _checkpoint(tmp_path, 2, complete=False)
    (tmp_path / "checkpoint-10").mkdir()  # created, nothing written yet
    assert complete_checkpoints(tmp_path) == [tmp_path / "checkpoint-1"]
    assert resume_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1"]


def test_checkpoints_are_ordered_by_step_not_by_name(tmp_path):
    for step in (2, 10, 9):
        _checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-11" / "trainer_state.json").parent.mkdir()
    (tmp_path / "checkpoint-11" / "trainer_state.json").write_text("{truncated")
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-9", "checkpoint-10"]
    assert resume_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert resume_checkpoint(tmp_path) is None
