"""`python -m reconciler DESIRED_STATE.json`: how the Job runs the reconciler."""

import sys

from reconciler.reconcile import main

sys.exit(main())
