"""The one time limit of the tests' child processes (``marginkit`` runs, ranks, a browser,
pip): :data:`HANG_LIMIT`.

It only catches hangs. A test never fails because the machine is busy: a run that takes 15 s
on an idle machine took over 120 s on a loaded one, where a fixed 120-second limit failed
it; at ``nice -n 19`` beside a saturating load, a two-process run that takes 30 s idle took
16 minutes. A test that waits for something waits for the event itself (a line on a pipe, a
file), with this limit only as the backstop; no test asserts how long something took.
"""

from __future__ import annotations

import os

#: Seconds a child process may take before the test calls it hung: 30 minutes, or
#: ``$MARGINKIT_TEST_HANG_LIMIT`` (for a machine slower still).
HANG_LIMIT = float(os.environ.get("MARGINKIT_TEST_HANG_LIMIT", "1800"))
