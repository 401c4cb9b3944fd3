"""``python -m photdb`` runs the command line."""

from photdb.cli import main

main()
