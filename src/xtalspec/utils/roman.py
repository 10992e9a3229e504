"""Roman numerals I–X: the names of the members of a seed ensemble (SpgNet I–VI of Ozaki et al.:
member k, counted from 0 in the order of ``xrd.seeds``, is ``ROMAN[k]``) in the XRD tables, figures,
rankings and the workflow's file names. Defined here once; no dependencies, so the workflow
(``workflow/rules/common.smk``) imports it too."""

ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X"]
