"""Stand-in for comfy.utils: ProgressBar reports to PROGRESS_BAR_HOOK, as ComfyUI's executor sets it."""

PROGRESS_BAR_HOOK = None   # tests set a callable(value, total)


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        if PROGRESS_BAR_HOOK is not None:
            PROGRESS_BAR_HOOK(self.current, self.total)

    def update(self, value):
        self.update_absolute(self.current + value)
