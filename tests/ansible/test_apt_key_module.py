"""Module ``ai_local_core.node.apt_key`` (collections/.../node/plugins/modules/apt_key.py), without
the internet: throwaway OpenPGP keys made with gpg in a temporary GNUPGHOME, served from a loopback
HTTP server, and the module run through ansible-playbook on this machine with the keyring under
tmp_path. Plus its pure parts (the ``--with-colons`` parser, fingerprint normalisation, armour).

Needs ``gpg`` (2.2.8+, for --show-keys); skipped without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.ansible.test_collection_plugins import play, results
from tests.loopback_http import LoopbackServer, loopback_server, static

MODULE = (
    Path(__file__).resolve().parents[2]
    / "collections/ansible_collections/ai_local_core/node/plugins/modules/apt_key.py"
)
TASK = "Install the key"
NO_PROXY = {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="needs gpg")


def gpg(home: Path, *args: str) -> bytes:
    return subprocess.run(
        ["gpg", "--batch", "--no-tty", "--homedir", str(home), *args],
        capture_output=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout


def colons(home: Path, key: str) -> list[tuple[str, str]]:
    """(pub|sub, fingerprint) of ``key`` in ``home``."""
    out, record = [], ""
    for line in gpg(home, "--with-colons", "--list-keys", key).decode().splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub"):
            record = fields[0]
        elif fields[0] == "fpr" and record:
            out.append((record, fields[9]))
            record = ""
    return out


@dataclass
class Keys:
    primary: str  # fingerprint of key A's primary key
    subkey: str  # fingerprint of key A's encryption subkey
    other: str  # fingerprint of key B's primary key
    files: dict[str, bytes]  # what the server serves, by name
    server: LoopbackServer

    def url(self, name: str) -> str:
        return self.server.url("/" + name)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    gpg(
        home,
        "--passphrase",
        "",
        "--quick-gen-key",
        "Test A <a@example.invalid>",
        "ed25519",
        "sign",
        "never",
    )
    (_, primary), *_ = colons(home, "a@example.invalid")
    gpg(home, "--passphrase", "", "--quick-add-key", primary, "cv25519", "encr", "never")
    subkey = dict((r, f) for r, f in reversed(colons(home, "a@example.invalid")))["sub"]
    gpg(
        home,
        "--passphrase",
        "",
        "--quick-gen-key",
        "Test B <b@example.invalid>",
        "ed25519",
        "sign",
        "never",
    )
    (_, other), *_ = colons(home, "b@example.invalid")
    files = {
        "a.gpg": gpg(home, "--export", primary),
        "a.asc": gpg(home, "--armor", "--export", primary),
        "b.gpg": gpg(home, "--export", other),
        "ab.gpg": gpg(home, "--export", primary, other),
        "junk.gpg": b"<html>not a key</html>\n",
    }
    with loopback_server({f"/{name}": static(200, body) for name, body in files.items()}) as srv:
        yield Keys(primary, subkey, other, files, srv)


def run_module(tmp_path: Path, args: dict[str, Any], *flags: str) -> dict[str, Any]:
    """The module's result for ``args`` in a one-task play on localhost."""
    playbook = f"""\
        - name: apt_key probe
          hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - name: {TASK}
              ai_local_core.node.apt_key: {json.dumps(args)}
        """
    interpreter = f"ansible_python_interpreter={sys.executable}"
    _, report = play(tmp_path, playbook, "-e", interpreter, *flags, **NO_PROXY)
    got: dict[str, Any] = results(report)[TASK]
    return got


def shown(path: Path) -> list[str]:
    """Primary fingerprints gpg reads from the keyring file (as apt would use it)."""
    home = path.parent / "gnupg-show"
    home.mkdir(mode=0o700, exist_ok=True)
    out = gpg(home, "--show-keys", "--with-colons", str(path)).decode()
    return [
        line.split(":")[9]
        for prev, line in zip(["", *out.splitlines()], out.splitlines(), strict=False)
        if line.startswith("fpr:") and prev.startswith("pub:")
    ]


def test_pinned_match_installs_a_binary_keyring_once(tmp_path: Path, keys: Keys) -> None:
    dest = tmp_path / "a.gpg"
    spaced = " ".join(keys.primary[i : i + 4] for i in range(0, 40, 4)).lower()
    args = {"url": keys.url("a.gpg"), "dest": str(dest), "fingerprints": [spaced]}
    got = run_module(tmp_path, args)
    assert got["changed"] is True and not got.get("failed"), got
    assert got["fingerprints"] == [keys.primary] and got["subkeys"] == [keys.subkey]
    assert "warning" not in got and not got.get("warnings")
    assert not dest.read_bytes().lstrip().startswith(b"-----BEGIN")
    assert shown(dest) == [keys.primary]
    assert dest.stat().st_mode & 0o777 == 0o644
    again = run_module(tmp_path, args)
    assert again["changed"] is False and not again.get("failed"), again


def test_armoured_download_is_dearmored_for_a_gpg_keyring(tmp_path: Path, keys: Keys) -> None:
    dest = tmp_path / "keyring.gpg"
    got = run_module(
        tmp_path, {"url": keys.url("a.asc"), "dest": str(dest), "fingerprints": [keys.primary]}
    )
    assert got["changed"] is True and got["armored"] is True, got
    assert dest.read_bytes() == keys.files["a.gpg"]
    assert shown(dest) == [keys.primary]


def test_armoured_download_stays_armoured_for_an_asc_keyring(tmp_path: Path, keys: Keys) -> None:
    dest = tmp_path / "keyring.asc"
    got = run_module(
        tmp_path, {"url": keys.url("a.asc"), "dest": str(dest), "fingerprints": [keys.primary]}
    )
    assert got["changed"] is True, got
    assert dest.read_bytes().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert shown(dest) == [keys.primary]


def test_mismatch_fails_and_writes_nothing(tmp_path: Path, keys: Keys) -> None:
    dest = tmp_path / "a.gpg"
    args = {
        "url": keys.url("b.gpg"),
        "dest": str(dest),
        "fingerprints": [keys.primary],
        "setting": "demo_repo_key_fingerprints",
    }
    got = run_module(tmp_path, args)
    assert got["failed"] is True and got["changed"] is False, got
    assert not dest.exists()
    msg = got["msg"]
    assert keys.url("b.gpg") in msg and keys.other in msg and keys.primary in msg, msg
    assert "rotated its key" in msg and "set demo_repo_key_fingerprints" in msg, msg


def test_mismatch_leaves_an_installed_keyring_alone(tmp_path: Path, keys: Keys) -> None:
    dest = tmp_path / "a.gpg"
    dest.write_bytes(b"previous keyring")
    got = run_module(
        tmp_path, {"url": keys.url("b.gpg"), "dest": str(dest), "fingerprints": [keys.primary]}
    )
    assert got["failed"] is True
    assert dest.read_bytes() == b"previous keyring"


def test_a_pinned_subkey_is_refused(tmp_path: Path, keys: Keys) -> None:
    dest = tmp_path / "a.gpg"
    got = run_module(
        tmp_path, {"url": keys.url("a.gpg"), "dest": str(dest), "fingerprints": [keys.subkey]}
    )
    assert got["failed"] is True and not dest.exists(), got
    assert f"{keys.subkey} is a subkey" in got["msg"], got["msg"]


def test_an_unpinned_extra_key_in_the_file_is_refused(tmp_path: Path, keys: Keys) -> None:
    dest = tmp_path / "ab.gpg"
    got = run_module(
        tmp_path, {"url": keys.url("ab.gpg"), "dest": str(dest), "fingerprints": [keys.primary]}
    )
    assert got["failed"] is True and not dest.exists(), got
    assert f"not pinned: {keys.other}" in got["msg"], got["msg"]
    both = run_module(
        tmp_path,
        {"url": keys.url("ab.gpg"), "dest": str(dest), "fingerprints": [keys.other, keys.primary]},
    )
    assert both["changed"] is True and sorted(shown(dest)) == sorted([keys.primary, keys.other])


def test_unpinned_installs_with_a_warning(tmp_path: Path, keys: Keys) -> None:
    dest = tmp_path / "a.gpg"
    got = run_module(tmp_path, {"url": keys.url("a.gpg"), "dest": str(dest)})
    assert got["changed"] is True and got["pinned"] is False, got
    assert "trusted on first use" in got["warning"] and keys.primary in got["warning"]
    assert any("trusted on first use" in w for w in got.get("warnings", [])), got
    assert shown(dest) == [keys.primary]


def test_check_mode_checks_and_writes_nothing(tmp_path: Path, keys: Keys) -> None:
    dest = tmp_path / "a.gpg"
    args = {"url": keys.url("a.gpg"), "dest": str(dest), "fingerprints": [keys.primary]}
    got = run_module(tmp_path, args, "--check")
    assert got["changed"] is True and got["fingerprints"] == [keys.primary], got
    assert not dest.exists()
    bad = run_module(tmp_path, {**args, "url": keys.url("b.gpg")}, "--check")
    assert bad["failed"] is True and not dest.exists()


def test_src_on_the_host_and_a_missing_src_in_check_mode(tmp_path: Path, keys: Keys) -> None:
    src = tmp_path / "staged.asc"
    src.write_bytes(keys.files["a.asc"])
    dest = tmp_path / "keyring.asc"
    got = run_module(tmp_path, {"src": str(src), "dest": str(dest), "fingerprints": [keys.primary]})
    assert got["changed"] is True and dest.read_bytes() == src.read_bytes(), got
    missing = {"src": str(tmp_path / "nope"), "dest": str(dest), "fingerprints": [keys.primary]}
    assert run_module(tmp_path, missing, "--check")["changed"] is True
    assert run_module(tmp_path, missing)["failed"] is True


def test_not_a_key_and_an_http_error_fail(tmp_path: Path, keys: Keys) -> None:
    dest = tmp_path / "a.gpg"
    junk = run_module(tmp_path, {"url": keys.url("junk.gpg"), "dest": str(dest)})
    assert junk["failed"] is True and not dest.exists(), junk
    missing = run_module(tmp_path, {"url": keys.url("missing.gpg"), "dest": str(dest)})
    assert missing["failed"] is True and "404" in missing["msg"], missing


# --- pure parts ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ai_local_core_node_apt_key", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_only_pub_fingerprints_are_primary(ak: ModuleType) -> None:
    listing = "\n".join(
        [
            "pub:-:4096:1:8A682D308D4E5E73:1761229688:::-:::scESC::::::23::0:",
            "fpr:::::::::CC94B39C77AE7342A68B89628A682D308D4E5E73:",
            "uid:-::::1761229688::HASH::Example <e@example.invalid>::::::::::0:",
            "sub:-:4096:1:029E1444B7D9F50F:1761229688::::::e::::::23:",
            "fpr:::::::::06C89DB3B80A8F4349697C76029E1444B7D9F50F:",
        ]
    )
    got = ak.parse_colons(listing)
    assert got.primary == ["CC94B39C77AE7342A68B89628A682D308D4E5E73"]
    assert got.subkeys == ["06C89DB3B80A8F4349697C76029E1444B7D9F50F"]


def test_fingerprints_are_normalised_and_checked(ak: ModuleType) -> None:
    assert ak.normalize(["eb69 3b30 35cd 5710 e231  e123 a4b4 6996 3bf8 63cc", " "]) == [
        "EB693B3035CD5710E231E123A4B469963BF863CC"
    ]
    with pytest.raises(ak.Refused, match="not fingerprints"):
        ak.normalize(["3BF863CC"])


def test_armour_round_trips_through_gpg(ak: ModuleType, keys: Keys, tmp_path: Path) -> None:
    binary = keys.files["a.gpg"]
    armoured = ak.armor(binary)
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    (tmp_path / "k.asc").write_bytes(armoured)
    assert gpg(home, "--dearmor", "--output", "-", str(tmp_path / "k.asc")) == binary


def test_check_mode_without_gpg_reports_a_change(
    ak: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The roles install gpg in the task before; check mode did not run it.
    monkeypatch.setenv("PATH", str(tmp_path))
    got = ak.ensure(b"key", "https://example.invalid/k.gpg", str(tmp_path / "k.gpg"), [], "s", True)
    assert got["changed"] is True and "gpg is not installed yet" in got["msg"], got
    assert not (tmp_path / "k.gpg").exists()
    with pytest.raises(ak.Refused, match="install the gpg package"):
        ak.Gpg()
