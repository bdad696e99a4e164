"""``python -m purenoise ...`` (also what ``torchrun -m purenoise train ...`` runs)."""
from purenoise.cli import entry

entry()
