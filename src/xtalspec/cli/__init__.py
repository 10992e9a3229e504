"""Command line: ``xtalspec <command>`` (console script ``xtalspec.cli:main``).

:mod:`.main` builds the parser, sets up logging and SIGTERM handling and gives a training command
its GPU slot; one thin module per system registers that system's commands (``register(sub)``):
:mod:`.structures`, :mod:`.xrd`, :mod:`.pdf`, :mod:`.xanes`, :mod:`.mof`, :mod:`.compositions`,
:mod:`.thesis`, :mod:`.bench`. A command parses its arguments and calls one function of the
package; tables, figures and file names live there, not here.
"""

from .main import SYSTEMS, build_parser, main, run

__all__ = ["SYSTEMS", "build_parser", "main", "run"]
