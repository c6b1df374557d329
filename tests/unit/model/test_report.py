"""`mco model report` and `mco model compare`: pages that say what the card says, rendered by Chromium."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

MCO = [sys.executable, "-m", "orchestrator.cli.main"]
CHROMIUM = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


class _Page(HTMLParser):
    """Tables by id (rows of cell texts), image sources, all text, and any external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.external: list[str] = []
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src") or "")
        for key in ("src", "href"):
            if a.get(key) and not str(a[key]).startswith("data:"):
                self.external.append(str(a[key]))
        if tag == "script":
            self.external.append("<script>")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _screenshot(page: Path, png: Path, height: int = 3000) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/setup/70-chromium.sh installs it)")
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           f"--window-size=1200,{height}", f"--screenshot={png}", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert png.is_file() and png.stat().st_size > 10_000, proc.stderr[-2000:]
    import matplotlib.image as mpimg

    pixels = mpimg.imread(png)
    assert pixels.shape[:2] == (height, 1200)
    ink = (pixels[..., :3].mean(axis=2) < 0.9).mean()
    assert 0.01 < ink < 0.6, f"the rendered page is blank or a solid block ({ink:.3f} of pixels dark)"


def test_report_says_what_the_card_says_and_renders(table_bundle, tmp_path):
    proc = subprocess.run([*MCO, "model", "report", str(table_bundle.path), "--out", str(tmp_path / "r"),
                           "--output", "json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    html_path = Path(result["report"])
    for name in ("confusion_matrix.png", "roc_ovr.png", "per_class_prf.png", "permutation_importance.png",
                 "class_distribution.png"):
        assert (tmp_path / "r" / name).is_file()
    page = _parse(html_path)
    card = table_bundle.card
    rep = card["evaluation"]["report"]

    assert page.external == [], "self-contained: no scripts, no links, every image embedded"
    assert len(page.images) == 5 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert base64.b64decode(page.images[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = {row[0]: row[1] for row in page.tables["metrics-table"][1:]}
    assert metrics["accuracy"] == f"{rep['accuracy']:.4f}"
    assert metrics["ROC AUC (one-vs-rest, macro)"] == f"{rep['roc_auc_ovr_macro']:.4f}"
    assert [r[0] for r in page.tables["per-class-table"][1:]] == ["bronze", "gold", "silver"]
    assert page.tables["confusion-table"][1][1:] == [str(v) for v in rep["confusion_matrix"]["matrix"][0]]
    dist = {row[0]: int(row[1]) for row in page.tables["class-distribution-table"][1:]}
    assert dist == card["data_look"]["class_counts"]
    missing = {row[0]: int(row[2]) for row in page.tables["missing-table"][1:]}
    assert missing == card["data_look"]["missing_values"]
    assert "--class-weight" in "".join(page.text)
    dropped = page.tables["dropped-table"]
    assert dropped[1][1] == str(card["data_look"]["rows_dropped"][0]["count"])
    cv = page.tables["cv-table"]
    assert len(cv) == 1 + 5 + 1 and cv[-1][0] == "mean ± std"
    assert f"{card['cross_validation']['summary']['macro_f1']['mean']:.4f} ±" in " ".join(cv[-1])
    search = page.tables["search-table"]
    assert [r[0] for r in search[1:]] == ["C=0.1", "C=1", "C=10"]
    assert [r[1] for r in search[1:]] == [f"{c['mean']:.4f}" for c in card["search"]["candidates"]]
    for label, feats in card["interpretability"]["top_features"]["classes"].items():
        assert [r[0] for r in page.tables[f"top-features-{label}"][1:]] == [f["feature"] for f in feats]
    importance = page.tables["permutation-table"]
    assert {r[0] for r in importance[1:]} == {"age", "income", "colour", "city"}
    assert importance[1][0] in ("age", "income"), "the informative numbers matter most"
    assert [r[:2] for r in page.tables["schema-table"][1:]] == [["age", "float32"], ["income", "float32"],
                                                                 ["colour", "string"], ["city", "string"]]
    _screenshot(html_path, tmp_path / "report.png")


def test_compare_shows_deltas_on_the_same_holdout_and_renders(table_bundle, tmp_path):
    from tests.conftest import write_mixed_csv

    other = tmp_path / "other"
    csv_path = write_mixed_csv(tmp_path / "mixed.csv")
    proc = subprocess.run([*MCO, "model", "train", "--data", str(csv_path), "--label-column", "tier",
                           "--strategy", "ovr", "--class-weight", "--out", str(other)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([*MCO, "model", "compare", str(table_bundle.path), str(other), "--out",
                           str(tmp_path / "c"), "--output", "json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    comparison = json.loads(proc.stdout)
    assert comparison["data"] == str(table_bundle.path / "data/holdout.csv")
    by_metric = {m["metric"]: m for m in comparison["metrics"]}
    assert by_metric["accuracy"]["a"] == pytest.approx(table_bundle.card["evaluation"]["report"]["accuracy"])
    for m in by_metric.values():
        assert m["delta"] == pytest.approx(m["b"] - m["a"])
    page = _parse(Path(comparison["page"]))
    rows = {r[0]: r for r in page.tables["compare-table"][1:]}
    assert rows["macro_f1"][1] == f"{by_metric['macro_f1']['a']:.4f}"
    assert rows["macro_f1"][3] == f"{by_metric['macro_f1']['delta']:+.4f}"
    assert [r[0] for r in page.tables["compare-per-class"][1:]] == ["bronze", "gold", "silver"]
    assert page.external == []
    _screenshot(Path(comparison["page"]), tmp_path / "compare.png", height=900)


def test_report_for_reference_and_imported_bundles(digits_bundle, tmp_path):
    from orchestrator.model.bundle import load_bundle
    from orchestrator.model.report import write_report

    result = write_report(load_bundle(digits_bundle.path), tmp_path / "r")
    page = _parse(Path(result["report"]))
    assert page.tables["metrics-table"][1][1] == f"{digits_bundle.card['evaluation']['report']['accuracy']:.4f}"
    assert "no cross-validation recorded" in "".join(page.text)
    assert len(page.tables["permutation-table"]) == 1 + 20, "the 20 most important of 64 pixels"
