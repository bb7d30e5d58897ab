"""Resolver: imports, scope, deployments flattening, selector expansion, name checks."""

from pathlib import Path

from cai_dsl.lang.resolver import resolve

VOCAB = 'facet topic: a | b\nfacet risk: low < high\nbehavior x "x"\nbehavior y "y"\n'


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def codes(c):
    return [d.code for d in c.diagnostics]


def test_imports_are_relative_and_loaded_once(tmp_path):
    write(tmp_path, "lib/vocab.const", VOCAB)
    write(tmp_path, "lib/p1.const", 'import "vocab.const"\nprinciple p1 { require x }\n')
    write(tmp_path, "lib/p2.const", 'import "vocab.const"\nprinciple p2 { require y }\n')
    root = write(tmp_path, "main.const", 'import "lib/p1.const"\nimport "lib/p2.const"\ndeployment base { include * }\n')
    c = resolve(root)
    assert [d for d in c.diagnostics if d.is_error] == []
    assert set(c.principles) == {"p1", "p2"} and len(c.files) == 4
    assert c.deployments["base"].principle_ids == ("p1", "p2")


def test_imported_deployments_are_not_in_scope(tmp_path):
    write(tmp_path, "lib.const", VOCAB + "principle p { require x }\ndeployment base { include * }\n")
    root = write(tmp_path, "main.const", 'import "lib.const"\ndeployment base { include * }\n')
    c = resolve(root)
    assert not c.has_errors and list(c.deployments) == ["base"]


def test_missing_import_points_at_the_import(tmp_path):
    root = write(tmp_path, "main.const", 'import "nope.const"\n')
    [d] = resolve(root).diagnostics
    assert (d.code, d.span.line, d.span.column) == ("CAI101", 1, 8)
    assert "nope.const" in d.message


def test_import_cycle_names_the_chain(tmp_path):
    write(tmp_path, "a.const", 'import "b.const"\n')
    write(tmp_path, "b.const", 'import "a.const"\n')
    c = resolve(str(tmp_path / "a.const"))
    [d] = [d for d in c.diagnostics if d.code == "CAI102"]
    assert "a.const -> " in d.message and d.message.count("a.const") == 2
    assert d.span.file.endswith("b.const")


def test_syntax_error_in_imported_file_is_reported_there(tmp_path):
    write(tmp_path, "bad.const", "facet :\n")
    root = write(tmp_path, "main.const", 'import "bad.const"\n')
    [d] = resolve(root).diagnostics
    assert d.code == "CAI001" and d.span.file.endswith("bad.const")


def test_duplicates(tmp_path):
    root = write(tmp_path, "m.const", VOCAB + "behavior x\nprinciple p { require x }\nprinciple p { require y }\n")
    c = resolve(root)
    dups = [d for d in c.diagnostics if d.code == "CAI109"]
    assert len(dups) == 2 and dups[0].related[0].message == "first defined here"


def test_deployment_flattening(tmp_path):
    root = write(
        tmp_path,
        "m.const",
        VOCAB
        + """principle harm.a { require x tags safety }
principle harm.b { require y }
principle help.c { forbid x tags helpfulness }
group safety = #safety, harm.*
priority safety > #helpfulness
deployment base { include * }
deployment narrow extends base {
  exclude help.*
  assume topic == a
  override harm.a { weight 3.0 }
  set revisions = 2
}
deployment narrower extends narrow { assume risk == high set selection = all }
""",
    )
    c = resolve(root)
    assert not c.has_errors, c.diagnostics
    base, narrow, narrower = (c.deployments[n] for n in ("base", "narrow", "narrower"))
    assert base.principle_ids == ("harm.a", "harm.b", "help.c")
    assert narrow.principle_ids == ("harm.a", "harm.b")
    assert narrower.chain == ("narrower", "narrow", "base")
    assert len(narrower.assumptions) == 2
    assert narrower.principle("harm.a").weight.value == 3.0 and base.principle("harm.a").weight is None
    assert (narrower.settings.revisions, narrower.settings.selection) == (2, "all")
    assert base.settings.revisions == 4
    assert {(e.higher, e.lower) for e in base.priorities} == {("harm.a", "help.c"), ("harm.b", "help.c")}


def test_name_errors(tmp_path):
    root = write(
        tmp_path,
        "m.const",
        VOCAB
        + """principle p { when topc == a and topic == c and topic < b require z }
conflict p vs q { otherwise: p }
deployment d extends nope { include harm.*, #nothing, ghost set revisons = 2 set revisions = 0 }
test "t" in missing { expect require x }
""",
    )
    found = codes(resolve(root))
    for code in ("CAI104", "CAI105", "CAI110", "CAI106", "CAI103", "CAI108", "CAI111", "CAI107", "CAI114", "CAI116"):
        assert code in found, (code, found)


def test_did_you_mean(tmp_path):
    root = write(tmp_path, "m.const", VOCAB + "principle p { when topik == a require x }\n")
    d = next(d for d in resolve(root).diagnostics if d.code == "CAI104")
    assert d.help == "did you mean `topic`?"


def test_deployment_cycle_and_group_cycle(tmp_path):
    root = write(
        tmp_path,
        "m.const",
        VOCAB + "principle p { require x }\ngroup g1 = g2\ngroup g2 = g1\n"
        "deployment a extends b { include * }\ndeployment b extends a { include p }\n",
    )
    found = codes(resolve(root))
    assert "CAI115" in found and "CAI118" in found


def test_unused_warnings_only_for_root_file(tmp_path):
    write(tmp_path, "v.const", VOCAB)
    root = write(tmp_path, "m.const", 'import "v.const"\nbehavior z\nprinciple p { require x }\n')
    c = resolve(root)
    assert [(d.code, d.message) for d in c.diagnostics] == [
        ("CAI113", "behavior `z` is never required, forbidden or preferred")
    ]


def test_vocabulary_files_get_no_unused_warnings(tmp_path):
    assert resolve(write(tmp_path, "v.const", VOCAB)).diagnostics == ()
