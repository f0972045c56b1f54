"""`python -m byol.cli ...` (as launchers such as torchrun call it): the same as `byol ...`."""
import sys

from byol.cli.main import main

sys.exit(main())
