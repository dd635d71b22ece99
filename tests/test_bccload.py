import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chargetrace.traces import ChargetraceError
from chargetrace.tracer import bccload


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No real bcc importable; a private cache dir for the shim."""
    saved = {m: mod for m, mod in sys.modules.items() if m == "bcc" or m.startswith("bcc.")}
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "bcc-shim" not in p and "dist-packages" not in p])
    for name in saved:
        del sys.modules[name]
    yield tmp_path
    for name in [m for m in sys.modules if m == "bcc" or m.startswith("bcc.") or m == "unrelated"]:
        del sys.modules[name]
    sys.modules.update(saved)


def _fake_dist(root: Path, version: str) -> Path:
    pkg = root / "dist-packages" / "bcc"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"__version__ = {version!r}\nclass BPF: pass\n")
    (root / "dist-packages" / "unrelated.py").write_text("raise RuntimeError('must stay hidden')\n")
    return root / "dist-packages"


def test_missing_bcc_names_the_package(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bccload, "DIST_PACKAGES_DIRS", (isolated / "nowhere",))
    with pytest.raises(ChargetraceError, match="apt-get install python3-bpfcc"):
        bccload.load_bcc()


def test_shim_exposes_only_bcc(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = _fake_dist(isolated, "0.26.0")
    monkeypatch.setattr(bccload, "DIST_PACKAGES_DIRS", (dist,))
    bcc = bccload.load_bcc()
    assert bcc.__version__ == "0.26.0"
    shim = isolated / "cache" / "chargetrace" / "bcc-shim"
    assert [p.name for p in shim.iterdir()] == ["bcc"]
    assert (shim / "bcc").resolve() == (dist / "bcc").resolve()
    assert str(dist) not in sys.path
    with pytest.raises(ImportError):
        __import__("unrelated")


def test_too_old_bcc(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bccload, "DIST_PACKAGES_DIRS", (_fake_dist(isolated, "0.12.0"),))
    with pytest.raises(ChargetraceError, match="too old"):
        bccload.load_bcc()
