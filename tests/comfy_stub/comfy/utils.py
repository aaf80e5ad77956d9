"""Stand-in for comfy.utils: ProgressBar reports to PROGRESS_BAR_HOOK, as ComfyUI's executor sets it.

As in current ComfyUI, an update less than `MIN_UPDATE_INTERVAL` seconds after the last one that went out
is dropped, unless it is the first or reaches the total; the hook gets `(value, total, preview, node_id=)`.
`clock` is the time source, replaceable by a test.
"""
import time

PROGRESS_BAR_HOOK = None   # tests set a callable(value, total, preview, node_id=None)
MIN_UPDATE_INTERVAL = 0.1
clock = time.monotonic


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id
        self._last_sent = None

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        now = clock()
        final = self.current >= self.total
        if self._last_sent is not None and not final and now - self._last_sent < MIN_UPDATE_INTERVAL:
            return
        self._last_sent = now
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)
