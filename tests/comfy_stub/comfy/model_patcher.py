"""Stand-in for comfy.model_patcher: a ModelPatcher only records the module and its two devices."""


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.size = size

    def model_size(self) -> int:
        return self.size
