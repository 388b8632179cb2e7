"""The stand-in for ``debian:bookworm-slim``, built here because no container registry can be reached.

Debian's official slim image is a debootstrap ``minbase`` of the suite, trimmed by debuerreotype: dpkg
told to skip docs, man pages and locales, apt told to keep no caches, and the security archive in its
sources. This recipe repeats those steps, so the Dockerfile's own ``apt-get``/``pip`` steps run on the
same packages they get under ``docker build``. The image is built once and kept in buildah's store,
tagged with a hash of this recipe: editing the recipe rebuilds it, anything else reuses it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.images import buildah

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
DEBOOTSTRAP = ["debootstrap", "--variant=minbase", SUITE]
# Written into the rootfs after debootstrap: what debuerreotype adds to make the `-slim` image.
FILES = {
    "etc/dpkg/dpkg.cfg.d/docker": "\n".join(
        [
            "path-exclude /usr/share/doc/*",
            "path-include /usr/share/doc/*/copyright",
            "path-exclude /usr/share/man/*",
            "path-exclude /usr/share/info/*",
            "path-exclude /usr/share/locale/*",
            "path-include /usr/share/locale/locale.alias",
            "path-exclude /usr/share/lintian/*",
            "",
        ]
    ),
    "etc/apt/apt.conf.d/docker-clean": 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
    'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n',
    "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
    "etc/apt/apt.conf.d/docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
    "etc/apt/sources.list.d/debian.sources": (
        f"Types: deb\nURIs: {MIRROR}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    ),
}
# Removed after the excludes are in place: what dpkg would have skipped had they been there from the start.
TRIM = ["usr/share/man", "usr/share/info", "usr/share/lintian", "var/lib/apt/lists", "var/cache/apt"]
CONFIG = ["--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--cmd", "bash"]


def recipe_key() -> str:
    recipe = {"debootstrap": DEBOOTSTRAP, "mirror": MIRROR, "files": FILES, "trim": TRIM, "config": CONFIG}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def image_name() -> str:
    return f"localhost/mnist-serving-standin-debian:{SUITE}-slim-{recipe_key()}"


def _trim(rootfs: Path) -> None:
    for relative in TRIM:
        target = rootfs / relative
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()
    for doc in (rootfs / "usr/share/doc").glob("*"):
        for item in doc.iterdir() if doc.is_dir() and not doc.is_symlink() else []:
            if item.name != "copyright":
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    for locale in (rootfs / "usr/share/locale").glob("*"):
        if locale.name != "locale.alias":
            shutil.rmtree(locale) if locale.is_dir() else locale.unlink()


def ensure() -> str:
    """The stand-in's image name, building it first if this recipe has not been built on this machine."""
    name = image_name()
    if buildah.image_exists(name):
        return name
    with tempfile.TemporaryDirectory(prefix="mnist-standin-", dir="/var/tmp") as work:
        rootfs = Path(work) / "rootfs"
        subprocess.run([*DEBOOTSTRAP, str(rootfs), MIRROR], check=True, capture_output=True, timeout=900)
        for relative, text in FILES.items():
            (rootfs / relative).parent.mkdir(parents=True, exist_ok=True)
            (rootfs / relative).write_text(text)
        _trim(rootfs)
        buildah.import_rootfs(rootfs, name, CONFIG)
    return name
