"""The Unicode confusables table (UTS #39, ``confusables.txt``) and the skeleton it defines.

Two strings are *confusable* when they have the same skeleton (UTS #39 §4, as of Unicode 15.1+):
NFD, drop Default_Ignorable code points, map every character to its prototype, NFD again. The table
ships inside the package (:mod:`bastion.text._confusables_table`, generated from the official file by
:func:`build_table`; its docstring gives the Unicode version, the source's sha256 and the licence), so
the sanitiser works offline on a clean machine.

Regenerate it from a newer ``confusables.txt`` with ``python -m bastion.text.confusables PATH``.
"""

from __future__ import annotations

import hashlib
import re
import sys
import textwrap
import unicodedata
from functools import lru_cache
from pathlib import Path

from bastion.errors import DataError

__all__ = [
    "UNICODE_VERSION",
    "build_table",
    "confusables_table",
    "homoglyphs",
    "is_default_ignorable",
    "prototype",
    "skeleton",
]

# Default_Ignorable_Code_Point (DerivedCoreProperties-15.0.0.txt, Debian unicode-data 15.0.0-1): the
# characters a renderer shows as nothing (zero-width, bidi controls, variation selectors, tags, fillers).
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)  # fmt: skip


def is_default_ignorable(char: str) -> bool:
    """True for a Default_Ignorable_Code_Point (one character)."""
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in _DEFAULT_IGNORABLE)


def _version() -> str:
    from bastion.text._confusables_table import UNICODE_VERSION as v

    return v


UNICODE_VERSION: str = _version()


@lru_cache(maxsize=1)
def confusables_table() -> dict[str, str]:
    """``{character: prototype}`` for every entry of the packaged table (parsed once, then cached)."""
    from bastion.text._confusables_table import ENTRIES, TABLE

    table: dict[str, str] = {}
    for line in TABLE.splitlines():
        if line:
            src, *dst = line.split()
            table[chr(int(src, 16))] = "".join(chr(int(c, 16)) for c in dst)
    if len(table) != ENTRIES:  # a truncated or hand-edited table must not pass silently
        raise DataError(f"the packaged confusables table has {len(table)} entries, expected {ENTRIES}")
    return table


def prototype(char: str) -> str:
    """The prototype of one character (itself when it is not in the table)."""
    return confusables_table().get(char, char)


def skeleton(text: str) -> str:
    """The UTS #39 skeleton of ``text``: NFD, drop default-ignorables, map to prototypes, NFD.

    Note that it maps some ASCII too ("m" -> "rn", "1" and "I" -> "l", "0" -> "O"): a skeleton is a key
    for *comparing* strings, not a text to show or classify (see :mod:`bastion.text.sanitise`).
    """
    table = confusables_table()
    nfd = unicodedata.normalize("NFD", text)
    mapped = "".join(table.get(c, c) for c in nfd if not is_default_ignorable(c))
    return unicodedata.normalize("NFD", mapped)


@lru_cache(maxsize=256)
def _homoglyphs(char: str, nfkc_stable: bool) -> tuple[str, ...]:
    target = skeleton(char)
    out = []
    for c, p in confusables_table().items():
        if c == char or len(c) != 1 or c.isascii():
            continue
        if unicodedata.normalize("NFD", p) != target or skeleton(c) != target:
            continue
        if nfkc_stable and unicodedata.normalize("NFKC", c) != c:
            continue
        out.append(c)
    return tuple(sorted(out))


def homoglyphs(char: str, *, nfkc_stable: bool = False) -> list[str]:
    """Non-ASCII single characters whose skeleton equals ``char``'s (sorted by code point).

    ``nfkc_stable=True`` keeps only those that Unicode NFKC leaves as they are (Cyrillic "а", Greek "ο"
    for "a"/"o", say, but not full-width or mathematical letters, which NFKC folds back): the look-alikes
    an attacker picks to get past an NFKC-only defence.
    """
    if len(char) != 1:
        raise DataError(f"homoglyphs() takes one character, got {char!r}")
    return list(_homoglyphs(char, nfkc_stable))


_LINE = re.compile(r"^([0-9A-F]{4,6})\s*;\s*([0-9A-F ]+?)\s*;\s*MA\b")

# The Unicode data-file licence asks that its notice travel with every copy, modified copies marked so.
_NOTICE = """Permission is hereby granted, free of charge, to any person obtaining a copy of the Unicode data
files and any associated documentation (the "Data Files") or Unicode software and any associated
documentation (the "Software") to deal in the Data Files or Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, and/or sell copies of the
Data Files or Software, and to permit persons to whom the Data Files or Software are furnished to do so,
provided that (a) the above copyright notice(s) and this permission notice appear with all copies of the
Data Files or Software, (b) both the above copyright notice(s) and this permission notice appear in
associated documentation, and (c) there is clear notice in each modified Data File or in the Software as
well as in the documentation associated with the Data File(s) or Software that the data or software has
been modified.

THE DATA FILES AND SOFTWARE ARE PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT OF THIRD PARTY RIGHTS. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR HOLDERS INCLUDED IN THIS
NOTICE BE LIABLE FOR ANY CLAIM, OR ANY SPECIAL INDIRECT OR CONSEQUENTIAL DAMAGES, OR ANY DAMAGES
WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE OR
OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THE DATA FILES OR
SOFTWARE.

Except as contained in this notice, the name of a copyright holder shall not be used in advertising or
otherwise to promote the sale, use or other dealings in these Data Files or Software without prior
written authorization of the copyright holder.
"""


def build_table(source: Path, out: Path, origin: str = "") -> int:
    """Write the packaged table module ``out`` from an official ``confusables.txt``; returns the entries.

    Keeps the source's version, date, copyright line and sha256, and the licence's notice, in the
    generated module's docstring.
    """
    raw = source.read_bytes()
    text = raw.decode("utf-8-sig")
    version = re.search(r"^#\s*Version:\s*(\S+)", text, flags=re.M)
    date = re.search(r"^#\s*Date:\s*(.+)$", text, flags=re.M)
    if version is None or "UTS #39" not in text:
        raise DataError(f"{source}: no '# Version:' line or no UTS #39 header; is this confusables.txt?")
    copyright_line = next((line[1:].strip() for line in text.splitlines() if "\u00a9" in line), "")
    rows = [m.group(1) + " " + m.group(2) for line in text.splitlines() if (m := _LINE.match(line))]
    body = (
        '"""UTS #39 confusables, generated by bastion.text.confusables.build_table -- do not edit.\n\n'
        "Source: confusables.txt (Unicode Security Mechanisms for UTS #39)\n"
        f"Version {version.group(1)}, date {date.group(1).strip() if date else '?'}\n"
        + (textwrap.fill(f"Copy taken from: {origin}", 100) + "\n" if origin else "")
        + f"sha256 of the source file: {hashlib.sha256(raw).hexdigest()}\n"
        "Modified: reformatted to one 'SOURCE PROTOTYPE...' line per entry (hex code points), comments "
        f"dropped.\n\n{copyright_line}\n\n{_NOTICE}"
        f'"""\n\nUNICODE_VERSION = "{version.group(1)}"\nENTRIES = {len(rows)}\n'
        'TABLE = """\n' + "\n".join(rows) + '\n"""\n'
    )
    out.write_text(body, encoding="utf-8")
    return len(rows)


if __name__ == "__main__":  # pragma: no cover - a maintenance script
    origin = " ".join(sys.argv[2:])  # where the copy came from, recorded in the table's docstring
    n = build_table(Path(sys.argv[1]), Path(__file__).with_name("_confusables_table.py"), origin)
    sys.stderr.write(f"wrote {n} entries\n")
