"""The report: HTML/Markdown content; browser rendering (the diagnosis rules: test_diagnosis)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from numnet.core.io import write_json
from numnet.lab import protocol, report, results
from numnet.lab.training import RunResult, RunSpec

CHROMIUM = "/usr/bin/chromium"


def run_dict(train, test, status="ok", model="model1", setting=1, diverged_at=None,
             epochs=5, lr=0.1) -> dict:
    n = len(train)
    spec = RunSpec(model=model, epochs=epochs, lr=lr, setting=setting, seed=11)
    return RunResult(
        spec=spec, status=status, updates=200 * n if status == "ok" else diverged_at - 1,
        samples=[20000 * (k + 1) for k in range(n)], train_accuracy=list(map(float, train)),
        test_accuracy=list(map(float, test)), train_loss=[0.3] * n, test_loss=[0.35] * n,
        init_seed=1, shuffle_seed=2, diverged_at_update=diverged_at,
        divergence_reason="non-finite training loss" if status == "diverged" else None,
        wall_time=1.5,
        # the final weights: one more update after the last curve point, a little better
        final_weights=None if status != "ok" or not n else {
            "update": 200 * n + 1, "train_accuracy": float(train[-1]) + 0.001,
            "test_accuracy": float(test[-1]) + 0.0005, "train_loss": 0.29, "test_loss": 0.34},
    ).to_dict()


def ramp(a: float, b: float, n: int = 20) -> list[float]:
    return list(np.linspace(a, b, n))


# ----------------------------------------------------------------------------- documents


def synthetic_doc(quick: bool = False) -> dict:
    """A results document of 12 hand-made runs (one diverged early, one diverged late)."""
    proto = protocol.load("assignment")
    if quick:
        proto = proto.quick_variant()
    runs = []
    for plan in proto.models:
        for k, s in enumerate(plan.settings, start=1):
            if (plan.name, k) == ("model2", 3):
                runs.append(run_dict([], [], "diverged", plan.name, k, 3, s.epochs, s.lr))
            elif (plan.name, k) == ("model3", 3):
                runs.append(run_dict(ramp(0.8, 0.9, 6), ramp(0.8, 0.88, 6), "diverged",
                                     plan.name, k, 1250, s.epochs, s.lr))
            else:
                top = 0.9 + 0.02 * k
                runs.append(run_dict(ramp(0.8, top), ramp(0.79, top - 0.01), "ok", plan.name,
                                     k, None, s.epochs, s.lr))
    runs_done = [RunResult.from_dict(r) for r in runs]
    data = {"dataset": "mnist", "train_examples": 55000, "validation_examples": 5000,
            "test_examples": 10000, "fingerprint": "f" * 32}
    timing = {"started_at": "2026-01-01T00:00:00+00:00", "finished_at": "x", "wall_time": 75.0,
              "training_time": 70.0, "reused_runs": []}
    return results.results_document(proto, runs_done, data, timing)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    doc = synthetic_doc()
    write_json(out / "results.json", doc)
    report.write_report(out, doc)
    return out


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Collector:
    c = Collector()
    c.feed(path.read_text(encoding="utf-8"))
    c.close()
    return c


def test_html_is_self_contained_and_has_every_run(written) -> None:
    page = parse(written / "report.html")
    ids = {a.get("id") for _, a in page.tags}
    doc = json.loads((written / "results.json").read_text())
    assert {r["run_id"] for r in doc["runs"]} <= ids and len(doc["runs"]) == 12
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert len(images) == 2
    for src in images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert base64.b64decode(images[0].split(",", 1)[1]) == (
        written / "learning_curves.png").read_bytes()
    for tag, attrs in page.tags:  # nothing fetched from anywhere
        for key in ("src", "href"):
            assert not str(attrs.get(key, "")).startswith(("http:", "https:", "//")), (tag, attrs)
        assert tag not in ("link", "iframe")
    assert sum(1 for t, _ in page.tags if t == "svg") == 12  # one sparkline per run
    text = " ".join(page.text)
    assert "Summary: final test accuracy" in text and "How the diagnosis works" in text
    assert "[models.model4]" in text  # the protocol file


def test_html_summary_table_marks_diverged_cells(written) -> None:
    page = parse(written / "report.html")
    cells = [a.get("class", "") for t, a in page.tags if t == "td"]
    assert cells.count("diverged") == 2
    html = (written / "report.html").read_text()
    assert "at update 3 · (15, 0.1)" in html and "at update 1250" in html
    assert html.count('class="summary"') == 1


def test_markdown_has_table_runs_and_rules(written) -> None:
    md = (written / "report.md").read_text()
    assert "| | Setting 1 | Setting 2 | Setting 3 |" in md
    assert "| Model 2 | " in md and "diverged<br>at update 3 · (15, 0.1)" in md
    assert md.count("### Model ") == 12
    assert "![Learning curves](learning_curves.png)" in md
    assert "## How the diagnosis works" in md and "```toml" in md


def test_rebuild_from_results_json_is_identical(written, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(written, copy)
    for name in ("report.html", "report.md", "learning_curves.png", "summary_table.png"):
        (copy / name).unlink()
    paths = report.rebuild(copy)
    assert sorted(paths) == ["learning_curves.png", "report.html", "report.md",
                             "summary_table.png"]
    for name in paths:
        assert (copy / name).read_bytes() == (written / name).read_bytes(), name


def test_format_summary_text(written) -> None:
    doc = json.loads((written / "results.json").read_text())
    lines = report.format_summary(doc).splitlines()
    assert lines[0].split() == ["Setting", "1", "Setting", "2", "Setting", "3"]
    # each model's row is two lines: the final weights' test accuracy, the verdict under it
    assert len(lines) == 1 + 4 * 2 + 1 and lines[3].startswith("Model 2  ")
    assert lines[3].split()[-1] == "diverged@3" and lines[4].startswith(" " * 9)
    m1s1 = next(r for r in doc["runs"] if r["run_id"] == "model1-setting1")
    verdict = report.diagnose_all(doc["runs"])["model1-setting1"].summary()
    column = lines[0].index("Setting 1")
    assert lines[1][column:].startswith(f"{m1s1['final_weights']['test_accuracy']:.4f} ")
    assert lines[2][column:].startswith(f"{verdict}  ")
    assert max(len(line) for line in lines[:-1]) <= 80 and lines[1] == lines[1].rstrip()
    assert lines[-1] == "test accuracy of the final weights (after the last update)"


def test_summary_shows_failed_verdicts_and_older_records_are_marked() -> None:
    doc = synthetic_doc()
    chance = [0.1 + (0.01 if k % 2 else -0.01) for k in range(20)]
    doc["runs"][0] = run_dict(chance, chance)  # model1-setting1 at chance
    del doc["runs"][1]["final_weights"]  # a record made before the final-weights evaluation
    text = report.format_summary(doc)
    accuracies, verdicts = text.splitlines()[1:3]
    assert verdicts.split()[0] == "NOT" and "NOT LEARNING" in verdicts
    assert f"{doc['runs'][1]['final_test_accuracy']:.4f}*" in accuracies
    assert text.splitlines()[-1].endswith("* last curve point (record without a final-weights "
                                          "evaluation)")


def test_quick_report_is_labelled(tmp_path) -> None:
    doc = synthetic_doc(quick=True)
    html = report.render_html(doc, {r["run_id"]: report.diagnose(r) for r in doc["runs"]},
                              {"learning_curves.png": b"x", "summary_table.png": b"y"})
    assert '<span class="quick">QUICK</span>' in html and "QUICK run" in html
    md = report.render_markdown(doc, {r["run_id"]: report.diagnose(r) for r in doc["runs"]})
    assert md.startswith("# numnet reproduce: assignment — QUICK") and "**QUICK run**" in md


# ----------------------------------------------------------------------------- browser

CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-decoded',
    imgs.filter(i => i.complete && i.naturalWidth > 0).length);
});
</script></body>"""


@pytest.mark.browser
def test_report_renders_in_headless_chromium(written, tmp_path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    probe = tmp_path / "probe.html"
    probe.write_text((written / "report.html").read_text().replace("</body>", CHECK_SCRIPT))
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-images="2"' in dom and 'data-decoded="2"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1400,2400",
                    (written / "report.html").as_uri()], capture_output=True, timeout=120)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1400)
    assert pixels[..., :3].std() > 0.05  # not a blank page
