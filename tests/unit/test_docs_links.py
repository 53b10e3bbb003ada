"""The documentation only points at things that exist.

For README.md and every docs/*.md:

* every relative link (``[text](path)``, ``[text]: path``) resolves to a file or directory;
* every ``make <target>`` written as code (an inline code span or a fenced block) names a target
  of the Makefile (lines ``target:`` at the start of a line);
* every ``playbooks/<name>.yml`` path mentioned anywhere exists.

Prose such as "make sure" is not a command; only code counts for ``make``. Links inside code are
examples, not links, and are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"

_FENCE_RE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE_RE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_INLINE_LINK_RE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK_RE = re.compile(r"^[ ]{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.MULTILINE)
_EXTERNAL_RE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//|#)")
_MAKE_RE = re.compile(r"(?:^|[\s;&|(`$])make((?:[ \t]+[^\s;&|)`#]+)+)", re.MULTILINE)
_TARGET_WORD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PLAYBOOK_RE = re.compile(r"(?<![\w./-])playbooks/[\w.-]+\.ya?ml\b")
_MAKEFILE_RULE_RE = re.compile(r"^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?![:=])", re.M)


def doc_files() -> list[Path]:
    """README.md and docs/*.md, the documents this test keeps honest."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def strip_code(text: str) -> str:
    """The text without fenced blocks and inline code spans (where links are examples)."""
    without_fences = _FENCE_RE.sub("", text)
    return _INLINE_CODE_RE.sub("", without_fences)


def code_fragments(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where a ``make`` is a command, not a verb."""
    fences = [m.group(0) for m in _FENCE_RE.finditer(text)]
    inline = [m.group(2) for m in _INLINE_CODE_RE.finditer(_FENCE_RE.sub("", text))]
    return fences + inline


def relative_links(text: str) -> list[str]:
    """Link targets that point into the repository (no scheme, no bare anchor)."""
    prose = strip_code(text)
    targets = _INLINE_LINK_RE.findall(prose) + _REFERENCE_LINK_RE.findall(prose)
    return [t for t in targets if not _EXTERNAL_RE.match(t)]


def make_targets_mentioned(text: str) -> list[str]:
    """Targets of every ``make ...`` command in code; options and VAR=value are skipped."""
    found: list[str] = []
    for fragment in code_fragments(text):
        for match in _MAKE_RE.finditer(fragment):
            for word in match.group(1).split():
                if word.startswith("-") or "=" in word:
                    continue
                if not _TARGET_WORD_RE.match(word):
                    break
                found.append(word)
    return found


def playbooks_mentioned(text: str) -> list[str]:
    return _PLAYBOOK_RE.findall(text)


def makefile_targets(makefile_text: str) -> set[str]:
    """Targets defined by ``target:`` rules (special targets such as .PHONY excluded)."""
    targets: set[str] = set()
    for match in _MAKEFILE_RULE_RE.finditer(makefile_text):
        targets.update(t for t in match.group(1).split() if not t.startswith("."))
    return targets


# --- the extractors themselves ------------------------------------------------------------


def test_makefile_parser_finds_rules_and_skips_variables() -> None:
    text = (
        "VENV ?= .venv\nBIN := x\n.PHONY: a\na: b ## help\n\tcmd: not a rule\n"
        "c d: ; true\n$(BIN)/.installed: x\nexport PATH := y\n"
    )
    assert makefile_targets(text) == {"a", "c", "d"}


def test_make_commands_are_found_in_code_only() -> None:
    text = (
        "You make sure it works, or `make deploy INVENTORY=x LIMIT=y`.\n"
        "```\nmake -j2 setup lint && make vm-test\n$ make status # comment\n```\n"
        "Editing it would make unattended-upgrades hold back nginx.\n"
    )
    assert make_targets_mentioned(text) == ["setup", "lint", "vm-test", "status", "deploy"]


def test_links_skip_external_anchors_and_code() -> None:
    text = (
        '[a](docs/x.md#part) [b](https://example.com) [c](#local) ![d](img.png "t")\n'
        "`[e](in-code.md)`\n```\n[f](in-fence.md)\n```\n[g]: ../other.md\n[h]: mailto:x@y\n"
    )
    assert relative_links(text) == ["docs/x.md#part", "img.png", "../other.md"]


def test_playbook_paths_are_found() -> None:
    text = (
        "run playbooks/site.yml, `ansible-playbook playbooks/rotate-credentials.yml`;"
        " not x/playbooks/y.yml"
    )
    assert playbooks_mentioned(text) == ["playbooks/site.yml", "playbooks/rotate-credentials.yml"]


# --- the documents ------------------------------------------------------------------------


def test_documents_are_there() -> None:
    names = {_rel(p) for p in doc_files()}
    assert "README.md" in names
    assert len(names) > 1, "docs/*.md found nothing"


def test_makefile_defines_targets() -> None:
    targets = makefile_targets(MAKEFILE.read_text(encoding="utf-8"))
    assert {"help", "setup", "lint"} <= targets


@pytest.mark.parametrize("doc", doc_files(), ids=_rel)
def test_relative_links_resolve(doc: Path) -> None:
    missing = []
    for target in relative_links(doc.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (doc.parent / path).exists():
            missing.append(target)
    assert not missing, f"{_rel(doc)} links to missing paths: {missing}"


@pytest.mark.parametrize("doc", doc_files(), ids=_rel)
def test_make_targets_exist(doc: Path) -> None:
    targets = makefile_targets(MAKEFILE.read_text(encoding="utf-8"))
    unknown = sorted(set(make_targets_mentioned(doc.read_text(encoding="utf-8"))) - targets)
    assert not unknown, f"{_rel(doc)} mentions make targets the Makefile lacks: {unknown}"


@pytest.mark.parametrize("doc", doc_files(), ids=_rel)
def test_playbooks_exist(doc: Path) -> None:
    mentioned = set(playbooks_mentioned(doc.read_text(encoding="utf-8")))
    missing = sorted(p for p in mentioned if not (ROOT / p).is_file())
    assert not missing, f"{_rel(doc)} mentions playbooks that do not exist: {missing}"
