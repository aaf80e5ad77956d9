"""Stand-in for ComfyUI's server module: `PromptServer.instance.routes` records the routes a pack adds."""


class RouteRecorder:
    def __init__(self):
        self.handlers: dict[tuple[str, str], object] = {}

    def get(self, path: str):
        def register(handler):
            self.handlers[("GET", path)] = handler
            return handler
        return register


class PromptServer:
    instance: "PromptServer"

    def __init__(self):
        self.routes = RouteRecorder()


PromptServer.instance = PromptServer()
