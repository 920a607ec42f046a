"""``python -m securefl.cli``: the ``securefl`` command."""

import sys

from securefl.cli import main

sys.exit(main())
