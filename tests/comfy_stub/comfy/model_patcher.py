"""Stand-in for comfy.model_patcher: a ModelPatcher records the module and its two devices, and writes
its bookkeeping attributes onto the module as ComfyUI's does (`device` first of all), so a module whose
`device` cannot be set fails here as it would in ComfyUI."""


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.size = size
        if getattr(model, "device", None) is None:
            model.device = offload_device
        for name, value in (("model_loaded_weight_memory", 0), ("lowvram_patch_counter", 0),
                            ("model_lowvram", False)):
            if not hasattr(model, name):
                setattr(model, name, value)

    def model_size(self) -> int:
        return self.size
