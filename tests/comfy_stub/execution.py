"""Stand-in for the part of ComfyUI's `execution` that checks a queued node's widget values
(`validate_inputs` there), so the tests see what a user's /prompt would get back.

The rules, as in current ComfyUI: each constant is converted to its widget type (INT, FLOAT, STRING,
BOOLEAN); then, unless the node's `validate_inputs` names that input in its signature (or takes
**kwargs), min / max and combo membership are checked; finally `validate_inputs` is called with the
inputs it names (a linked input arrives as None). Returns ComfyUI's error dicts (empty: valid).
"""
from __future__ import annotations

import inspect


def _overrides_validate_inputs(node_cls) -> bool:
    from comfy_api.latest._io import ComfyNode
    return node_cls.validate_inputs.__func__ is not ComfyNode.validate_inputs.__func__


def validate_node_inputs(node_cls, inputs: dict) -> list[dict]:
    """`inputs` as in an API-format prompt: constants, or [node_id, slot] for a link."""
    declared = node_cls.INPUT_TYPES()
    spec = {**declared.get("required", {}), **declared.get("optional", {})}
    named, has_kwargs = [], False
    if _overrides_validate_inputs(node_cls):
        argspec = inspect.getfullargspec(node_cls.validate_inputs)
        named, has_kwargs = argspec.args, argspec.varkw is not None
    errors, values = [], {}
    for name, (input_type, options) in spec.items():
        if name not in inputs:
            if name in declared.get("required", {}):
                errors.append({"type": "required_input_missing", "details": name, "extra_info": {"input_name": name}})
            continue
        value = inputs[name]
        if isinstance(value, list):
            values[name] = None
            continue
        try:
            value = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(input_type, lambda v: v)(value)
        except (TypeError, ValueError) as error:
            errors.append({"type": "invalid_input_type", "details": f"{name}, {value}, {error}",
                           "extra_info": {"input_name": name}})
            continue
        values[name] = value
        if name in named or has_kwargs:
            continue
        if "min" in options and value < options["min"]:
            errors.append({"type": "value_smaller_than_min", "details": name, "extra_info": {"input_name": name}})
        elif "max" in options and value > options["max"]:
            errors.append({"type": "value_bigger_than_max", "details": name, "extra_info": {"input_name": name}})
        elif input_type == "COMBO" and value not in options.get("options", []):
            errors.append({"type": "value_not_in_list", "details": f"{name}: '{value}' not in list",
                           "extra_info": {"input_name": name}})
    if named or has_kwargs:
        passed = {k: v for k, v in values.items() if k in named or has_kwargs}
        result = node_cls.validate_inputs(**passed)
        if result is not True:
            for name in passed:
                errors.append({"type": "custom_validation_failed", "details": f"{name} - {result}",
                               "extra_info": {"input_name": name}})
    return errors
