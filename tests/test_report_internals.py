"""The report's evidence: findings from hand-made internals, and every new figure in
report.html (embedded, decodable) and report.md (linked files) of a real tiny reproduce."""

from __future__ import annotations

import base64
import io
import re
import subprocess
from pathlib import Path

import pytest
from tiny_mnist import tiny_datasets

from numnet.lab import protocol
from numnet.lab.experiments import reproduce
from numnet.lab.report.diagnosis import diagnose_all
from numnet.lab.report.evidence import add_evidence, evidence_findings

CHROMIUM = "/usr/bin/chromium"
TINY = """
name = "tiny"
[training]
batch_size = 50
eval_every = 3
eval_train_examples = 200
eval_test_examples = 200
[models.model2]
settings = [{ epochs = 2, lr = 0.1 }, { epochs = 2, lr = 0.0005 }]
[models.model4]
settings = [{ epochs = 2, lr = 0.002 }]
"""


def run_with(internals: dict, reduction: str = "sum", lr: float = 0.1) -> dict:
    return {"spec": {"batch_size": 100, "lr": lr, "reduction": reduction},
            "internals": internals}


def internals(dead: list, ratio: list, weight: list, top: list, start_w: float = 1.0) -> dict:
    n = len(dead)
    return {"update": [200 * (k + 1) for k in range(n)],
            "weight_norm": {"fc1": weight}, "grad_norm": {"fc1": [1.0] * n},
            "update_ratio": {"fc1": ratio}, "dead_fraction": {"relu1": dead},
            "logit_absmax": [5.0] * n, "logit_std": [1.0] * n, "top_prob": top,
            "start": {"update": [0, 1], "weight_norm": {"fc1": [start_w, start_w]},
                      "grad_norm": {"fc1": [None, 1.0]}, "update_ratio": {"fc1": [None, 0.6]},
                      "dead_fraction": {"relu1": [0.0, 0.3]}, "logit_absmax": [1.0, 9.0],
                      "logit_std": [1.0, 1.0], "top_prob": [0.1, 0.9]}}


def test_findings_cite_dead_units_ratio_growth_and_the_summed_loss() -> None:
    i = internals(dead=[0.4, 1.0, 1.0], ratio=[0.0, 0.0, 0.0], weight=[50.0, 90.0, 90.0],
                  top=[0.12, 0.11, 0.11])
    found = evidence_findings(run_with(i), "not learning")
    text = "\n".join(found)
    assert "all relu1's units are 0 on every probe example from update 400 on" in text
    # the largest ratio is the first step's 0.6: 600x the usual 1e-3
    assert "update/weight ratio up to 0.6 (fc1 at update 1), 600x the usual 0.001" in text
    assert "fc1's weight norm went from 1 at initialisation to 90 (90x)" in text
    assert "passed 10x by update 200" in text
    assert "top-class probability 0.110 (uniform is 0.100)" in text
    assert "steps 100x as large as the mean loss would (the same as lr 10 with the mean)" in text


def test_a_healthy_run_gets_no_evidence_finding() -> None:
    i = internals(dead=[0.1, 0.1], ratio=[2e-3, 1e-3], weight=[1.2, 1.3], top=[0.9, 0.95])
    i["start"]["update_ratio"]["fc1"] = [None, 3e-3]
    assert evidence_findings(run_with(i, lr=0.01), "good fit") == []
    assert not any("Summed" in f for f in evidence_findings(run_with(i, "mean"), "not learning"))
    assert evidence_findings({"spec": {}, "internals": None}, "good fit") == []


def test_partly_dead_and_tiny_steps() -> None:
    i = internals(dead=[0.2, 0.75, 0.6], ratio=[1e-5, 2e-5, 1e-5], weight=[1.0, 1.0, 1.0],
                  top=[0.5, 0.5, 0.5])
    i["start"]["update_ratio"]["fc1"] = [None, 5e-5]
    text = "\n".join(evidence_findings(run_with(i, lr=1e-4), "under-fitting"))
    assert "60% of relu1's units are 0 on every probe example from update 400 on." in text
    assert "at most 5e-05 (fc1 at update 1), 20x below the usual 0.001" in text


@pytest.fixture(scope="module")
def tiny_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evidence")
    reproduce(protocol.loads(TINY), data=tiny_datasets(), out_dir=out, progress="none",
              log=lambda _: None)
    return out


def data_uri_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_report_embeds_and_links_every_evidence_figure(tiny_out: Path) -> None:
    import matplotlib.image

    html = (tiny_out / "report.html").read_text()
    assert 'id="internals"' in html and "Why: training internals and final models" in html
    figures = sorted(p.name for p in (tiny_out / "figures").iterdir())
    assert figures == sorted(
        [f"model2-setting{k}.{kind}.png" for k in (1, 2) for kind in ("internals", "confusion")]
        + [f"model4-setting1.{kind}.png" for kind in ("internals", "confusion", "cnn")])
    pngs = data_uri_pngs(html)
    assert len(pngs) == 2 + len(figures)  # learning curves, summary table, the evidence
    for name in figures:  # each figure file is embedded byte for byte and decodes
        data = (tiny_out / "figures" / name).read_bytes()
        assert data in pngs
        pixels = matplotlib.image.imread(io.BytesIO(data))
        assert pixels.shape[0] > 200 and pixels[..., :3].std() > 0.05
    for kind in ("internals", "confusion", "cnn"):
        assert f'class="evidence {kind}"' in html
    md = (tiny_out / "report.md").read_text()
    for name in figures:
        assert f"(figures/{name})" in md
    assert "## Why: training internals and final models" in md


def test_report_findings_of_the_real_runs(tiny_out: Path) -> None:
    import json

    doc = json.loads((tiny_out / "results.json").read_text())
    run = next(r for r in doc["runs"] if r["run_id"] == "model2-setting1")
    assert run["internals"]["start"]["update"] == [0, 1]
    assert len(run["internals"]["update"]) == run["evaluations"]
    d = add_evidence(doc["runs"], diagnose_all(doc["runs"]))[run["run_id"]]
    # lr 0.1 on the summed loss of 50 examples: the ReLUs of model 2 die, it does not learn
    assert d.verdict == "not learning"
    evidence = evidence_findings(run, d.verdict)
    assert d.findings[-len(evidence):] == evidence
    assert any(f.startswith("Dead ReLUs: all relu1's units are 0") for f in evidence)
    assert any(f.startswith("Summed loss: the gradient is summed over the batch of 50, so lr "
                            "0.1 takes steps 50x") for f in evidence)
    html = (tiny_out / "report.html").read_text()
    assert "Dead ReLUs: all relu1&#x27;s units are 0" in html
    csv = (tiny_out / "runs" / "model2-setting1.metrics.csv").read_text().splitlines()
    assert "dead_fraction.relu1" in csv[0].split(",")


CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-decoded',
    imgs.filter(i => i.complete && i.naturalWidth > 0).length);
  const ev = Array.from(document.querySelectorAll('figure.evidence img'));
  document.body.setAttribute('data-evidence',
    ev.filter(i => i.complete && i.naturalWidth > 300).length);
});
</script></body>"""


@pytest.mark.browser
def test_evidence_images_decode_in_headless_chromium(tiny_out: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    probe = tmp_path / "probe.html"
    probe.write_text((tiny_out / "report.html").read_text().replace("</body>", CHECK_SCRIPT))
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    n = len(list((tiny_out / "figures").iterdir()))
    assert f'data-images="{n + 2}"' in dom and f'data-decoded="{n + 2}"' in dom
    assert f'data-evidence="{n}"' in dom
