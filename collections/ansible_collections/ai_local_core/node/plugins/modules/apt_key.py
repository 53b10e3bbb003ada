#!/usr/bin/python
"""Ansible module ``ai_local_core.node.apt_key``: install an apt repository key only when its
OpenPGP fingerprint is one that was pinned.

The one key check of the project: roles ``nvidia_driver`` (CUDA repository), ``tailscale`` and
``cloudflared``. The key is downloaded (or read from a file on the host) into memory, listed with
``gpg --batch --show-keys --with-colons`` under a private, temporary GNUPGHOME, and written to the
keyring path only when every primary key in it is pinned: HTTPS proves who served the file, not
that it is the vendor's key. Check mode downloads and checks the same way and writes nothing.

Runs on the managed host: standard library, Ansible's module_utils and ``gpg``; Python 3.9+.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCUMENTATION = r"""
module: apt_key
short_description: Install an apt repository key after checking its pinned fingerprint
description:
  - Gets the key from O(url) (Ansible's C(fetch_url), so proxies, CA bundles and C(validate_certs)
    behave as with M(ansible.builtin.get_url)) or from O(src), a file on the host.
  - Lists it with C(gpg --batch --show-keys --with-colons) under a private temporary GNUPGHOME
    (the host's keyrings are neither read nor changed).
  - Only B(primary) keys count, never subkeys. apt trusts every primary key of a C(Signed-By)
    file with all its subkeys, so pinning the primary key covers the subkeys, while a pinned
    subkey fingerprint would let a different primary key in, so it is refused.
  - With O(fingerprints) set, every primary key in the file must be one of them (a file that adds
    an unpinned key next to the pinned one is refused, as apt would trust that key too). A mismatch
    fails before anything changes, naming the source, the fingerprints found and the pinned ones.
  - With O(fingerprints) empty, the key is installed as it is (trust on first use) and the result
    carries a RV(warning).
  - Written to O(dest) atomically (mode 0644; owner root when run as root), only when its content,
    mode or owner differ (RV(changed) only then). A O(dest) ending in C(.gpg) gets a binary
    keyring (an ASCII-armoured download is converted with C(gpg --dearmor)); one ending in
    C(.asc) gets an ASCII-armoured key (a binary download is armoured); any other name gets the
    file as
    downloaded. apt's C(Signed-By) accepts both, by that file name extension.
  - Check mode gets and checks the key the same way, reports whether O(dest) would change and
    writes nothing. A O(src) that does not exist yet, or a host without C(gpg) (both would come
    from earlier tasks that check mode did not run), is reported as a change, unchecked.
options:
  url:
    description: Where to download the key (https, http or file). Exactly one of O(url), O(src).
    type: str
  src:
    description: A key file already on the host. Exactly one of O(url), O(src).
    type: path
  dest:
    description: The keyring path that apt's C(Signed-By) names.
    type: path
    required: true
  fingerprints:
    description:
      - The accepted primary-key fingerprints (40 hex digits; upper or lower case, spaces
        ignored). Empty installs the key unchecked, with a warning.
    type: list
    elements: str
    default: []
  setting:
    description: The variable that sets O(fingerprints), named in the messages.
    type: str
    default: fingerprints
  timeout:
    description: Seconds the download may take.
    type: int
    default: 30
  validate_certs:
    description: Check the server's TLS certificate.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
requirements:
  - gpg (GnuPG 2.2.8 or later, for --show-keys)
author: ai-local-core
"""

EXAMPLES = r"""
- name: Install the Tailscale repository key (pinned)
  ai_local_core.node.apt_key:
    url: https://pkgs.tailscale.com/stable/ubuntu/noble.noarmor.gpg
    dest: /usr/share/keyrings/tailscale-archive-keyring.gpg
    fingerprints: ["2596 A99E AAB3 3821 893C  0A79 458C A832 957F 5868"]
    setting: tailscale_repo_key_fingerprints
"""

RETURN = r"""
dest:
  description: The keyring path.
  returned: always
  type: str
source:
  description: The URL or file the key came from.
  returned: always
  type: str
fingerprints:
  description: The primary-key fingerprints in the file (upper case, no spaces).
  returned: when the key was read
  type: list
  elements: str
subkeys:
  description: The subkey fingerprints in the file (informational; never matched).
  returned: when the key was read
  type: list
  elements: str
armored:
  description: Whether the key as received was ASCII-armoured.
  returned: when the key was read
  type: bool
pinned:
  description: Whether fingerprints were pinned.
  returned: always
  type: bool
warning:
  description: Set when nothing was pinned (the key is trusted on first use).
  returned: when O(fingerprints) is empty
  type: str
"""

ARMOR_BEGIN = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
FINGERPRINT = re.compile(r"^(?:[0-9A-F]{40}|[0-9A-F]{64})$")


class Refused(Exception):
    """A key that cannot be read or is refused; the message is the module's failure message."""


@dataclass
class Listing:
    primary: list[str] = field(default_factory=list)
    subkeys: list[str] = field(default_factory=list)


def normalize(fingerprints: list[str]) -> list[str]:
    """Upper case, spaces removed; raises on anything that is not a fingerprint."""
    out = [re.sub(r"\s+", "", f).upper() for f in fingerprints if f.strip()]
    bad = [f for f in out if not FINGERPRINT.match(f)]
    if bad:
        raise Refused(
            f"not fingerprints (40 hex digits): {', '.join(bad)}; `gpg --show-keys FILE` shows "
            "a key's fingerprint"
        )
    return out


def parse_colons(listing: str) -> Listing:
    """Primary and subkey fingerprints of ``gpg --with-colons`` output: an ``fpr`` record belongs
    to the ``pub``/``sub`` record above it."""
    got = Listing()
    record = ""
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub", "sec", "ssb"):
            record = fields[0]
        elif fields[0] == "fpr" and len(fields) > 9 and fields[9]:
            if record == "pub":
                got.primary.append(fields[9].upper())
            elif record == "sub":
                got.subkeys.append(fields[9].upper())
            record = ""
    return got


def is_armored(data: bytes) -> bool:
    return data.lstrip().startswith(ARMOR_BEGIN)


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def armor(data: bytes) -> bytes:
    """ASCII armour (RFC 4880 section 6) for a binary public key."""
    text = base64.b64encode(data).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode()
    body = "\n".join(lines)
    end = "-----END PGP PUBLIC KEY BLOCK-----"
    return f"{ARMOR_BEGIN.decode()}\n\n{body}\n={crc}\n{end}\n".encode()


class Gpg:
    """gpg under a private temporary GNUPGHOME, removed on exit."""

    def __init__(self, binary: str = "gpg") -> None:
        found = shutil.which(binary)
        if not found:
            raise Refused("gpg is needed to read the key: install the gpg package")
        self.binary = found
        self.home = ""

    def __enter__(self) -> Gpg:
        self.home = tempfile.mkdtemp(prefix="ai-local-core-apt-key-")
        Path(self.home).chmod(0o700)
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def run(self, *args: str, data: bytes) -> bytes:
        path = Path(self.home) / "key"
        path.write_bytes(data)
        proc = subprocess.run(
            [self.binary, "--batch", "--no-tty", "--homedir", self.home, *args, str(path)],
            capture_output=True,
            env={**os.environ, "GNUPGHOME": self.home, "LC_ALL": "C"},
            check=False,
        )
        if proc.returncode != 0:
            raise Refused(
                f"gpg {' '.join(args)} failed (rc {proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout

    def list(self, data: bytes) -> Listing:
        out = self.run("--show-keys", "--with-colons", data=data)
        return parse_colons(out.decode(errors="replace"))

    def dearmor(self, data: bytes) -> bytes:
        return self.run("--dearmor", "--output", "-", data=data)


def refusal(source: str, found: Listing, pinned: list[str], setting: str) -> str | None:
    """The failure message when the primary keys in the file are not all pinned, else None."""
    unpinned = [f for f in found.primary if f not in pinned]
    if found.primary and not unpinned:
        return None
    subkey_pins = [f for f in pinned if f in found.subkeys]
    text = (
        f"the repository key from {source} has primary key fingerprint(s) "
        f"{', '.join(found.primary) or 'none'}"
    )
    if found.primary and len(unpinned) < len(found.primary):
        text += f" (not pinned: {', '.join(unpinned)})"
    text += f"; {setting} pins {', '.join(pinned)}. apt was not told to trust it."
    if subkey_pins:
        text += (
            f" {', '.join(subkey_pins)} is a subkey in that file: pin the primary key instead "
            "(subkeys are never matched)."
        )
    text += (
        " If the vendor rotated its key, check the new fingerprint on the vendor's own page, "
        f"then set {setting}."
    )
    return text


def plan(
    data: bytes, source: str, dest: str, pinned: list[str], setting: str, gpg: Gpg
) -> tuple[bytes, dict[str, Any]]:
    """Check ``data`` and return what ``dest`` must contain, and the result so far.
    Raises Refused with the failure message."""
    found = gpg.list(data)
    result: dict[str, Any] = {
        "fingerprints": found.primary,
        "subkeys": found.subkeys,
        "armored": is_armored(data),
    }
    if not found.primary:
        raise Refused(f"{source} holds no OpenPGP public key (gpg --show-keys lists none)")
    if pinned:
        message = refusal(source, found, pinned, setting)
        if message:
            raise Refused(message)
    else:
        result["warning"] = (
            f"the repository key from {source} ({', '.join(found.primary)}) is trusted on "
            "first use: nothing pins it. Check that fingerprint on the vendor's page, then set "
            f"{setting}."
        )
    content = data
    if dest.endswith(".gpg") and result["armored"]:
        content = gpg.dearmor(data)
    elif dest.endswith(".asc") and not result["armored"]:
        content = armor(data)
    return content, result


def write_atomic(dest: str, content: bytes) -> None:
    """``dest`` replaced in one rename, mode 0644 (owner root:root when run as root)."""
    fd, name = tempfile.mkstemp(prefix=".apt-key-", dir=Path(dest).parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(0o644)
        if os.geteuid() == 0:
            os.chown(tmp, 0, 0)
        tmp.replace(dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def needs_write(dest: str, content: bytes) -> bool:
    """Content, mode or (as root) owner of ``dest`` differ from what it should be."""
    path = Path(dest)
    try:
        if path.read_bytes() != content:
            return True
        st = path.stat()
    except FileNotFoundError:
        return True
    owner_wrong = os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0)
    return (st.st_mode & 0o7777) != 0o644 or owner_wrong


def ensure(
    data: bytes,
    source: str,
    dest: str,
    fingerprints: list[str],
    setting: str = "fingerprints",
    check_mode: bool = False,
    gpg: Gpg | None = None,
) -> dict[str, Any]:
    """The module's work after the key was read: the result (``failed``/``msg`` on a refusal)."""
    result: dict[str, Any] = {"changed": False, "dest": dest, "source": source}
    try:
        pinned = normalize(fingerprints)
        result["pinned"] = bool(pinned)
        if gpg is None and check_mode and not shutil.which("gpg"):
            # The role installs gpg in the task before, which check mode did not run.
            result.update(
                changed=True,
                msg=f"{dest}: gpg is not installed yet (check mode): "
                "the key would be checked and installed",
            )
            return result
        with gpg or Gpg() as keys:
            content, checked = plan(data, source, dest, pinned, setting, keys)
    except Refused as err:
        result.update(failed=True, msg=str(err))
        return result
    result.update(checked)
    if needs_write(dest, content):
        result["changed"] = True
        if not check_mode:
            write_atomic(dest, content)
    what = "pinned " if pinned else "unpinned "
    result["msg"] = (
        f"{dest}: {what}key {', '.join(result['fingerprints'])} "
        + ("installed" if result["changed"] else "already installed")
        + (" (check mode: nothing written)" if check_mode and result["changed"] else "")
    )
    return result


def main() -> None:
    # Imported here, not at the top: ensure() stays importable by the unit tests without loading
    # ansible.module_utils (which patches sys.intern in the importing process).
    from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]
    from ansible.module_utils.urls import fetch_url  # type: ignore[import-untyped]

    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str"},
            "src": {"type": "path"},
            "dest": {"type": "path", "required": True},
            "fingerprints": {"type": "list", "elements": "str", "default": []},
            "setting": {"type": "str", "default": "fingerprints"},
            "timeout": {"type": "int", "default": 30},
            "validate_certs": {"type": "bool", "default": True},
        },
        mutually_exclusive=[("url", "src")],
        required_one_of=[("url", "src")],
        supports_check_mode=True,
    )
    p = module.params
    source = p["url"] or p["src"]
    if p["src"]:
        if module.check_mode and not Path(p["src"]).exists():
            module.exit_json(
                changed=True,
                dest=p["dest"],
                source=source,
                pinned=bool(p["fingerprints"]),
                msg=f"{p['src']} is not there yet (check mode): the key would be checked",
            )
        try:
            data = Path(p["src"]).read_bytes()
        except OSError as err:
            module.fail_json(msg=f"cannot read the key {p['src']}: {err}", dest=p["dest"])
    else:
        response, info = fetch_url(module, p["url"], timeout=p["timeout"])
        if response is None or info.get("status") not in (200, None):
            why = f"HTTP {info.get('status')} {info.get('msg', '')}".strip()
            module.fail_json(msg=f"cannot download the key {p['url']}: {why}", dest=p["dest"])
        data = response.read()
    result = ensure(data, source, p["dest"], p["fingerprints"], p["setting"], module.check_mode)
    if result.pop("failed", False):
        module.fail_json(**result)
    if "warning" in result:
        module.warn(result["warning"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
