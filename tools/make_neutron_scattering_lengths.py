"""Write src/xtalspec/data/neutron_scattering_lengths.csv from the periodictable wheel (run once).

The table is the bound coherent neutron scattering length b_c of Sears (1992), Neutron News 3(3),
26-37, as the NIST Center for Neutron Research publishes it and as the public-domain PyPI package
``periodictable`` ships it (``periodictable/nsf.py``, the ``nsftable`` text block, with the updates
that package documents: Rauch & Waschkowski 2003, Lynn & Seeger 1990 for the rare-earth absorbers,
newer measurements of H, He, Li, C, O, ...). The wheel is read
as a zip file: nothing of it is imported or executed. Usage (PyPI only, no other network)::

    python -m pip download --no-deps periodictable==2.1.0 -d /tmp/pt
    python tools/make_neutron_scattering_lengths.py /tmp/pt/periodictable-2.1.0-py3-none-any.whl

Rows: every element Z = 1..98 with a value. An element's own row (natural isotopic mixture) is
used when the table has one; otherwise the element's first isotope row, which for the elements
with one stable isotope (Na-23, Mn-55, ...) *is* the natural element (abundance 100 %), and for
radioactive elements without a stable isotope (Tc, Pm, Ra, Pa, Np, Pu, Am, Cm) is the isotope the
table lists (the ``basis`` column says which). D and T get the H-2 and H-3 rows. The real part is
kept (periodictable stores b_c real; the absorbers' imaginary parts are not used for G(r)).
"""

from __future__ import annotations

import hashlib
import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/xtalspec/data/neutron_scattering_lengths.csv"
VALUE = re.compile(r"^([-+]?\d+(?:\.\d+)?)(?:\((\d+(?:\.\d+)?)\))?\*?$")


def parse_value(text: str) -> tuple[float, str] | None:
    """'-3.750(18)' -> (-3.75, '0.018'): the value and its 1-sigma uncertainty in the value's units."""
    match = VALUE.match(text.strip())
    if match is None:
        return None
    value, digits = match.group(1), match.group(2)
    if digits is None:
        return float(value), ""
    if "." in digits:  # '10.0(1.0)': the uncertainty is written in the value's own units
        return float(value), digits
    decimals = len(value.split(".")[1]) if "." in value else 0
    return float(value), f"{int(digits) * 10.0 ** -decimals:.{decimals}f}"


def table_rows(nsf_source: str) -> list[list[str]]:
    block = nsf_source.split('nsftable = """\\\n', 1)[1].split('"""', 1)[0]
    return [line.rstrip("\\").split(",") for line in block.strip().splitlines()]


def build(rows: list[list[str]]) -> list[tuple]:
    elements, isotopes = {}, {}
    for columns in rows:
        parts = columns[0].split("-")
        z = int(parts[0])
        if z < 1 or z > 98:
            continue
        parsed = parse_value(columns[3])
        if parsed is None:
            continue
        if len(parts) == 2:
            elements[z] = (parts[1], *parsed, "natural")
        else:
            isotopes.setdefault(z, []).append((parts[1], int(parts[2]), columns[1], *parsed))
    out = []
    for z in range(1, 99):
        if z in elements:
            out.append((z, *elements[z]))
        elif z in isotopes:
            symbol, mass, abundance, value, unc = isotopes[z][0]
            basis = "natural (single isotope)" if abundance.strip() == "100" else \
                f"isotope {symbol}-{mass} (no stable isotope; half-life {abundance.strip()})"
            out.append((z, symbol, value, unc, basis))
    for symbol, mass in (("D", 2), ("T", 3)):
        _, _, _, value, unc = next(i for i in isotopes[1] if i[1] == mass)
        out.append((1, symbol, value, unc, f"isotope H-{mass}"))
    return out


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read("periodictable/nsf.py")
        version = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    digest = hashlib.sha256(source).hexdigest()
    rows = build(table_rows(source.decode("utf-8")))
    missing = sorted(set(range(1, 99)) - {r[0] for r in rows})
    header = [
        "# Bound coherent neutron scattering lengths b_c (fm = 1e-15 m) of the elements, natural isotopic mixture.",
        "# Source: V. F. Sears, Neutron News 3(3), 26-37 (1992), as tabulated by the NIST Center for Neutron Research",
        "#   and shipped in the public-domain PyPI package periodictable (P. Kienzle, NIST). periodictable updates some",
        "#   entries (its nsf.py docstring and issue #59 list them): values from Rauch & Waschkowski (2003), energy-dependent",
        "#   b_c at 25.3 meV for the resonant rare-earth absorbers (Lynn & Seeger 1990: Sm, Eu, Gd, ...) and newer",
        "#   measurements (H, He, Li, C, O, Nd, Pb, Bi, ...), so some values differ from the NIST web page (most for Sm, Gd).",
        f"# Made once by tools/make_neutron_scattering_lengths.py from {Path(wheel).name}",
        f"#   ({version.split('/')[0]}), file periodictable/nsf.py (sha256 {digest}), text block nsftable,",
        "#   column b_c; values copied verbatim (real part), uncertainty = the table's 1-sigma digits in fm.",
        "# Licence: public domain (periodictable: 'Periodictable is in the public domain'; NIST data, US Government work).",
        "# basis: 'natural' = the element's own row; 'natural (single isotope)' = the one stable isotope (abundance 100 %);",
        "#   'isotope X-A' = radioactive element without a stable isotope (the isotope the table lists); D, T = H-2, H-3.",
        f"# No value in the table (PDFError 'no neutron scattering length'): Z = {', '.join(map(str, missing))}.",
        "Z,symbol,b_c_fm,uncertainty_fm,basis",
    ]
    lines = header + [f"{z},{s},{v:g},{u},{b}" for z, s, v, u, b in rows]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"{OUT}: {len(rows)} rows; missing Z = {missing}")


if __name__ == "__main__":
    main(sys.argv[1])
