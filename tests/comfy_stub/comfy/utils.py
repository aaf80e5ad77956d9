"""Stand-in for comfy.utils: ProgressBar reports to PROGRESS_BAR_HOOK, as ComfyUI's executor sets it.

As in current ComfyUI (0.38), an update that carries a preview, the first one and the one that reaches the
total are always sent; any other is dropped unless it comes at least `MIN_UPDATE_INTERVAL` seconds after
the last one sent and moves the bar by at least `MIN_UPDATE_PERCENT` of its total. The hook gets
`(value, total, preview, node_id=)`. `clock` is the time source, replaceable by a test.
"""
import time

PROGRESS_BAR_HOOK = None   # tests set a callable(value, total, preview, node_id=None)
MIN_UPDATE_INTERVAL = 0.1
MIN_UPDATE_PERCENT = 0.5
clock = time.monotonic


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id
        self._last_sent_time = 0.0
        self._last_sent_value = -1

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        if self.hook is None:
            return
        now = clock()
        always = preview is not None or self._last_sent_value < 0 or self.current >= self.total
        moved = (self.current - max(0, self._last_sent_value)) / self.total * 100 if self.total > 0 else 100
        if not always and (now - self._last_sent_time < MIN_UPDATE_INTERVAL or moved < MIN_UPDATE_PERCENT):
            return
        self._last_sent_time = now
        self._last_sent_value = self.current
        self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)
