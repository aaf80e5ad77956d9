"""Stand-in for comfy.model_management on a CPU-only machine.

`load_models_gpu` moves each patcher's module to its load device and lists it in `current_loaded_models`
(most recent first); `unload_all_models` moves them all back to their offload devices, like the "free
memory" button. `LOAD_DEVICE` lets a test use a different (e.g. "meta"-free fake) device pair.
"""
import torch

LOAD_DEVICE = torch.device("cpu")
OFFLOAD_DEVICE = torch.device("cpu")
current_loaded_models = []
load_requests = []          # (patcher, memory_required, force_full_load) per call, for the tests
_interrupted = False


class InterruptProcessingException(BaseException):
    """A BaseException, as in current ComfyUI: `except Exception` does not swallow a cancel."""


def get_torch_device():
    return LOAD_DEVICE


def unet_offload_device():
    return OFFLOAD_DEVICE


vae_device = text_encoder_device = get_torch_device
vae_offload_device = text_encoder_offload_device = unet_offload_device


def intermediate_device():
    return torch.device("cpu")


def unet_dtype(device=None, model_params=0, supported_dtypes=(torch.float16, torch.bfloat16, torch.float32),
               weight_dtype=None):
    return torch.float32


def vae_dtype(device=None, allowed_dtypes=()):
    return torch.float32


def text_encoder_dtype(device=None):
    return torch.float16


def module_size(module):
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                    force_full_load=False):
    for patcher in models:
        load_requests.append((patcher, memory_required, force_full_load))
        patcher.model.to(patcher.load_device)
        patcher.model.device = patcher.load_device
        if patcher in current_loaded_models:
            current_loaded_models.remove(patcher)
        current_loaded_models.insert(0, patcher)


def free_memory(memory_required, device, keep_loaded=()):
    return []


def unload_all_models():
    for patcher in current_loaded_models:
        patcher.model.to(patcher.offload_device)
        patcher.model.device = patcher.offload_device
    current_loaded_models.clear()


def soft_empty_cache(force=False):
    pass


def interrupt_current_processing(value=True):
    global _interrupted
    _interrupted = value


def processing_interrupted():
    return _interrupted


def throw_exception_if_processing_interrupted():
    global _interrupted
    if _interrupted:
        _interrupted = False
        raise InterruptProcessingException()
