"""``python -m lifelong_kd`` (and ``torchrun -m lifelong_kd``): the ``lifelong-kd`` command."""

import sys

from .cli import main

sys.exit(main())
