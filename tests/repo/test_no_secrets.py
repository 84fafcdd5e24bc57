"""No secret is committed: generated credentials live in a git-ignored
directory, and nothing tracked looks like a key or a literal password."""

import re
import subprocess

import pytest

from tests.conftest import ROOT

SUSPICIOUS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    # a URL with a literal password (templated ones contain "{{")
    re.compile(r"postgres(?:ql)?://[^:/\s{}]+:(?!\{)[^@\s{}]{6,}@"),
    re.compile(r"(?i)\bpassword\s*[:=]\s*['\"]?(?![{<$])[A-Za-z0-9+/]{16,}"),
]


def tracked_files():
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def git_available():
    return (ROOT / ".git").exists()


pytestmark = pytest.mark.skipif(not git_available(), reason="not a git checkout")


def test_credentials_directory_is_ignored():
    proc = subprocess.run(
        ["git", "check-ignore", "-q", "credentials/db_password"], cwd=ROOT, check=False
    )
    assert proc.returncode == 0
    assert not any("credentials/" in str(p.relative_to(ROOT)) for p in tracked_files())


def test_generated_credentials_appear_in_no_tracked_file():
    secrets = [p.read_text().strip() for p in (ROOT / "credentials").glob("*") if p.is_file()]
    secrets = [s for s in secrets if len(s) >= 12]
    for path in tracked_files():
        if path.is_file() and not path.is_symlink():
            text = path.read_text(errors="ignore")
            for secret in secrets:
                assert secret not in text, f"a generated credential is in {path}"


def test_nothing_tracked_looks_like_a_secret():
    for path in tracked_files():
        if not path.is_file() or path.is_symlink() or "fixtures" in path.parts:
            continue
        text = path.read_text(errors="ignore")
        for pattern in SUSPICIOUS:
            match = pattern.search(text)
            assert match is None, f"{path.relative_to(ROOT)}: {match.group(0)!r}"
