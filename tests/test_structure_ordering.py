"""The majority-occupant approximation of structures with partial occupancies (XANES cache)."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xtalspec.structures.ordering import AS_PUBLISHED, MAJORITY_OCCUPANT, majority_occupant, structure_model


def _rock_salt(cation_species):
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.26), [cation_species, "O"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_mixed_cation_site_takes_its_majority_occupant():
    s = _rock_salt({"Co": 0.6, "Mg": 0.4})
    assert not s.is_ordered
    o = majority_occupant(s)
    assert o.is_ordered
    assert o.composition.reduced_formula == "CoO"
    assert len(o) == len(s)
    assert np.allclose(o.frac_coords, s.frac_coords)


def test_minority_absorber_is_not_made_an_absorber():
    o = majority_occupant(_rock_salt({"Co": 0.3, "Mg": 0.7}))
    assert "Co" not in {el.symbol for el in o.composition.elements}


def test_tie_is_broken_by_symbol_not_by_cif_order():
    a = majority_occupant(_rock_salt({"Ni": 0.5, "Co": 0.5}))
    b = majority_occupant(_rock_salt({"Co": 0.5, "Ni": 0.5}))
    assert a.composition == b.composition
    assert a.composition.reduced_formula == "CoO"


def test_mostly_empty_position_is_dropped_and_split_positions_merge():
    lattice = Lattice.cubic(5.0)
    s = Structure(lattice, ["Fe", {"O": 0.5}, {"O": 0.5}, {"O": 0.3}],
                  [[0, 0, 0], [0.4, 0, 0], [0.44, 0, 0], [0, 0.5, 0]])
    o = majority_occupant(s)
    assert [site.specie.symbol for site in o] == ["Fe", "O"]   # the 0.3 position dropped, the split pair kept once
    assert np.allclose(o[1].frac_coords, [0.4, 0, 0])


def test_ordered_structure_is_unchanged_and_models_are_named():
    s = _rock_salt("Ni")
    assert majority_occupant(s) == s
    assert structure_model(s, AS_PUBLISHED) is s
    assert structure_model(_rock_salt({"Ni": 0.9, "Mg": 0.1}), MAJORITY_OCCUPANT).is_ordered
    with pytest.raises(ValueError):
        structure_model(s, "virtual_crystal")
