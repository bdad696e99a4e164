"""``python -m purenoise ...`` (also what ``torchrun -m purenoise train ...`` runs)."""
import sys

from purenoise.cli import main

sys.exit(main())
