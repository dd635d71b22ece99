"""The HTML report in a real headless Chromium (Debian's /usr/bin/chromium, driven by playwright).

Checks: the page loads from a file:// URL with no console errors and no
network request, the charts are drawn (plotly SVG traces exist and a
screenshot is far from blank) and a mutated trace's violation timeline is there.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYNTH = ROOT / "traces" / "synthetic-hmm-lifecycle-6.7.parquet"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


def _browser(p, tmp_path: Path):
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium (Debian: apt-get install chromium)")
    return p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM, args=ARGS,
                                                headless=True, viewport={"width": 1280, "height": 900})


def test_report_renders_offline_with_violation_timeline(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) not installed")
    from PIL import Image, ImageStat

    mutated, html = tmp_path / "mut.parquet", tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "chargetrace.cli", "mutate", str(SYNTH), str(mutated),
                           "--drop-device-free-uncharge", "1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "chargetrace.cli", "report", str(mutated), "-o", str(html)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with sync_api.sync_playwright() as p:
        ctx = _browser(p, tmp_path)
        page = ctx.new_page()
        problems: list[str] = []
        remote: list[str] = []
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(("file:", "data:", "blob:")) else None)
        page.goto(html.as_uri())
        page.wait_for_function("document.querySelectorAll('.chart .main-svg').length >= 3", timeout=30_000)
        counts = page.evaluate("""() => ({
            charts: document.querySelectorAll('.chart').length,
            traces: document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length,
            timelines: [...document.querySelectorAll('.violation-timeline')].map(d => d.dataset.rule),
            timelinePoints: document.querySelectorAll('.violation-timeline .scatterlayer .point').length,
            verdict: document.querySelector('#verdict').innerText,
        })""")
        page.locator(".violation-timeline").first.scroll_into_view_if_needed()
        shot = page.screenshot(full_page=True)
        ctx.close()
    assert problems == [] and remote == []
    assert "violations" in counts["verdict"]
    assert counts["charts"] >= 3 and counts["traces"] >= 5
    assert counts["timelines"] == ["R6"] and counts["timelinePoints"] >= 3
    img = Image.open(io.BytesIO(shot)).convert("L")
    stat = ImageStat.Stat(img)
    assert img.size[1] > 1500  # coverage, ledger, charts and the timeline: a long page
    assert stat.stddev[0] > 20  # not a blank (uniform) page
    colours = Image.open(io.BytesIO(shot)).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # chart lines and markers, not just text on white
