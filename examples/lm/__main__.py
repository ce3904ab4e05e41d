"""``python -m examples.lm``: the language-model example's command line (see ``main.py``)."""

import sys

from examples.lm.main import main

sys.exit(main())
