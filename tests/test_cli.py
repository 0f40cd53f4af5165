"""`python -m verify`: arguments, exit status, report.json schema, report.md, figures, unsupported targets.

Runs only fast claims (P4, P6: exact arithmetic, < 1 s) plus stand-in claims registered for the
duration of a test (monkeypatched into the registry, removed afterwards).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from verify import cli, report
from verify.registry import REGISTRY, CheckResult, Claim, Context, Verdict, all_claims

REPO = Path(__file__).resolve().parents[1]
FAST = "P4,P6"
RECORD_KEYS = {"id", "claim", "verdict", "figure", "bound", "relation", "provenance", "target", "backend",
               "seed", "profile", "detail", "evidence", "figures", "statement", "tolerance", "paper"}


def _load(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _stand_in(monkeypatch, cid, check, targets=("ours",)):
    all_claims()  # import the claim modules first, so that the stand-in is not imported over
    claim = Claim(id=cid, paper="A", provenance="stated", statement="stand-in", tolerance="none",
                  faults=("f",), targets=targets, check=check)
    monkeypatch.setitem(REGISTRY, cid, claim)
    return claim


def test_report_json_schema(tmp_path):
    assert cli.main(["--claims", FAST, "--out", str(tmp_path), "--seed", "3", "--quiet"]) == 0
    doc = _load(tmp_path)
    assert doc["schema"] == 1
    assert {r["claim"] for r in doc["claims"]} == {"P4", "P6"}
    for r in doc["claims"]:
        assert RECORD_KEYS <= set(r), RECORD_KEYS - set(r)
        assert r["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
        assert (r["target"], r["backend"], r["seed"], r["profile"]) == ("ours", "cpu", 3, "quick")
    assert [s["claim"] for s in doc["summary"]] == ["P4", "P6"]
    meta = doc["metadata"]
    assert meta["profile"] == "quick" and meta["claims"] == ["P4", "P6"] and "numpy" in meta["versions"]
    md = (tmp_path / "report.md").read_text()
    assert "| P4 |" in md and "PASS" in md


def test_fail_exits_nonzero_and_figures(tmp_path, monkeypatch):
    def check(ctx):
        series = {"curve": {"x": [1, 10, 100], "y": [1.0, 0.1, 0.01], "scale": "loglog"}}
        return [CheckResult.compare("Z8-a", 0.5, 1.0, evidence={"series": series}),
                CheckResult.compare("Z8-b", 2.0, 1.0)]

    _stand_in(monkeypatch, "Z8", check)
    assert cli.main(["--claims", "Z8", "--out", str(tmp_path), "--quiet"]) == cli.EXIT_FAIL
    doc = _load(tmp_path)
    assert [r["verdict"] for r in doc["claims"]] == ["PASS", "FAIL"]
    assert doc["summary"][0]["verdict"] == "FAIL" and doc["summary"][0]["failed"] == ["Z8-b"]
    figs = doc["claims"][0]["figures"]
    pytest.importorskip("matplotlib")
    assert figs and (tmp_path / figs[0]).is_file()


def test_unsupported_target_is_inconclusive(tmp_path, monkeypatch, capsys):
    def check(ctx):
        raise AssertionError("must not run for an unsupported target")

    _stand_in(monkeypatch, "Z7", check, targets=("ours",))
    assert cli.main(["--claims", "Z7", "--target", "package", "--out", str(tmp_path), "--quiet"]) == 0
    (rec,) = _load(tmp_path)["claims"]
    assert rec["verdict"] == "INCONCLUSIVE" and "not supported" in rec["detail"]
    assert rec["target"] == "package"
    assert "no claim was verified" in capsys.readouterr().err


def test_raising_check_reported(tmp_path, monkeypatch):
    def check(ctx):
        raise RuntimeError("solver exploded")

    _stand_in(monkeypatch, "Z6", check)
    assert cli.main(["--claims", "Z6", "--out", str(tmp_path), "--quiet"]) == cli.EXIT_ERROR
    (rec,) = _load(tmp_path)["claims"]
    assert rec["verdict"] == "INCONCLUSIVE" and "solver exploded" in rec["error"]


def test_context_reaches_the_check(tmp_path, monkeypatch):
    seen = []

    def check(ctx: Context):
        seen.append((ctx.profile, ctx.target, ctx.backend, ctx.seed, ctx.fault))
        return [CheckResult.compare("Z5", 1.0, 1.0)]

    _stand_in(monkeypatch, "Z5", check, targets=("ours", "paper"))
    assert cli.main(["--claims", "Z5", "--profile", "full", "--target", "paper", "--seed", "7",
                     "--out", str(tmp_path), "--quiet"]) == 0
    assert seen == [("full", "paper", "cpu", 7, None)]


@pytest.mark.parametrize("argv,message", [
    (["--claims", "X99"], "unknown claim"),
    (["--claims", " , "], "names no claim id"),
    (["--seed", "-1"], "--seed must be >= 0"),
])
def test_usage_errors(argv, message, tmp_path, capsys):
    assert cli.main([*argv, "--out", str(tmp_path)]) == cli.EXIT_ERROR
    assert message in capsys.readouterr().err


def test_unusable_out_is_a_usage_error_before_any_claim_runs(tmp_path, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(cli, "run_claim", lambda *a: ran.append(a))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, message in ((a_file, "is not a directory"), (a_file / "sub", "cannot be created")):
        assert cli.main(["--claims", FAST, "--out", str(out)]) == cli.EXIT_ERROR
        assert message in capsys.readouterr().err
    assert not ran


def test_cuda_absent_is_a_clear_error(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA present: nothing to refuse")
    assert cli.main(["--backend", "cuda", "--claims", FAST, "--out", str(tmp_path)]) == cli.EXIT_ERROR
    assert "CUDA is not available" in capsys.readouterr().err


def test_bad_choice_rejected_by_argparse():
    with pytest.raises(SystemExit) as exc:
        cli.parser().parse_args(["--profile", "medium"])
    assert exc.value.code == 2


def test_module_entry_point(tmp_path):
    """`python -m verify` as a user types it: prints the checklist, exit 0, writes the report."""
    proc = subprocess.run([sys.executable, "-m", "verify", "--claims", "P6", "--out", str(tmp_path),
                           "--no-figures"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "P6" in proc.stdout and "PASS" in proc.stdout
    assert (tmp_path / "report.json").is_file() and (tmp_path / "report.md").is_file()


def test_claim_verdict_aggregation():
    assert report.claim_verdict(["PASS", "FAIL"]) == "FAIL"
    assert report.claim_verdict(["PASS", "PASS"]) == "PASS"
    assert report.claim_verdict(["PASS", "INCONCLUSIVE"]) == "INCONCLUSIVE"
    assert report.claim_verdict([]) == "INCONCLUSIVE"


def test_jsonable_handles_numpy_and_nan():
    np = pytest.importorskip("numpy")
    out = report._jsonable({"a": np.float64(np.nan), "b": np.arange(3), "c": (np.int64(2), Verdict.PASS)})
    assert out == {"a": "nan", "b": [0, 1, 2], "c": [2, "PASS"]}


def test_a_broken_figure_keeps_the_report(tmp_path, monkeypatch):
    """A series that cannot be drawn (len(x) != len(y)) is an error of that record (exit 2), not the loss of
    the whole run: report.json holds every result (audit: it crashed before writing anything)."""
    pytest.importorskip("matplotlib")

    def check(ctx):
        bad = {"curve": {"x": [1, 2, 3], "y": [1.0, 2.0]}}
        return [CheckResult.compare("Z4-a", 0.5, 1.0, evidence={"series": bad}),
                CheckResult.compare("Z4-b", 0.5, 1.0)]

    _stand_in(monkeypatch, "Z4", check)
    assert cli.main(["--claims", "Z4", "--out", str(tmp_path), "--quiet"]) == cli.EXIT_ERROR
    a, b = _load(tmp_path)["claims"]
    assert a["verdict"] == "PASS" and "figure_error" in a["evidence"] and a["error"].startswith("figure:")
    assert b["verdict"] == "PASS"


def test_a_broken_dependency_skips_its_claims(tmp_path):
    """torch installed but failing to import (ImportError, not ModuleNotFoundError: a missing CUDA library)
    skips the claims that need it with a note; the others run (audit: the CLI crashed, exit 1)."""
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text("raise ImportError('libtorch_cuda.so: cannot open shared "
                                                "object file')\n")
    env = {**__import__("os").environ, "PYTHONPATH": f"{fake}:{REPO}"}
    proc = subprocess.run([sys.executable, "-m", "verify", "--claims", "P6", "--out", str(tmp_path / "o"),
                           "--no-figures"], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "claims L1-L7 unavailable: verify.claims_layer needs torch (libtorch_cuda.so" in proc.stderr
    assert "claims N1-N4 unavailable: a dependency failed to import: libtorch_cuda.so" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "verify", "--claims", "L3", "--out", str(tmp_path / "o"),
                           "--no-figures"], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == cli.EXIT_ERROR
    assert "unknown claim id(s) ['L3']" in proc.stderr and "claims L1-L7 unavailable" in proc.stderr


def test_option_reaches_the_check(tmp_path, monkeypatch, capsys):
    """--option KEY=VALUE fills Context.options (ints where the value is integral: T=3e5 -> 300000)."""
    seen = []

    def check(ctx):
        seen.append(dict(ctx.options))
        return [CheckResult.compare("Z3", 1.0, 1.0)]

    _stand_in(monkeypatch, "Z3", check)
    argv = ["--claims", "Z3", "--out", str(tmp_path), "--quiet", "--option", "T=3e5", "--option", "eta=0.5",
            "--option", "mode=fast"]
    assert cli.main(argv) == 0
    assert seen == [{"T": 300000, "eta": 0.5, "mode": "fast"}]
    assert cli.main(["--claims", "Z3", "--out", str(tmp_path), "--option", "T"]) == cli.EXIT_ERROR
    assert "--option must read KEY=VALUE" in capsys.readouterr().err


def test_partial_report_after_each_claim(tmp_path, monkeypatch):
    """After each claim but the last, report.json holds the results so far (metadata.complete false): a run
    cut short (a timeout on a lent GPU) keeps what finished."""
    seen = []

    def first(ctx):
        return [CheckResult.compare("Z1", 1.0, 1.0)]

    def second(ctx):
        seen.append(_load(tmp_path))            # the report as it stands while the second claim runs
        return [CheckResult.compare("Z2", 1.0, 1.0)]

    _stand_in(monkeypatch, "Z1", first)
    _stand_in(monkeypatch, "Z2", second)
    assert cli.main(["--claims", "Z1,Z2", "--out", str(tmp_path), "--quiet"]) == 0
    (partial,) = seen
    assert [r["id"] for r in partial["claims"]] == ["Z1"] and partial["metadata"]["complete"] is False
    final = _load(tmp_path)
    assert [r["id"] for r in final["claims"]] == ["Z1", "Z2"] and final["metadata"]["complete"] is True
