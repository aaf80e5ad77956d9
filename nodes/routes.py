"""GET /infinity/output_sizes: the image size and number of scales that each aspect preset and pixel
budget give, read from the core's schedules, so the web extension never keeps its own copy."""
from __future__ import annotations

from server import PromptServer

from infinity_core import ASPECT_PRESETS, PIXEL_BUDGETS, get_schedule

OUTPUT_SIZES_ROUTE = "/infinity/output_sizes"


def output_size_table() -> dict[str, dict[str, dict[str, int]]]:
    """{aspect preset: {pixel budget: {"width", "height", "scales"}}}."""
    table = {}
    for aspect, h_div_w in ASPECT_PRESETS.items():
        table[aspect] = {}
        for pixels in PIXEL_BUDGETS:
            schedule = get_schedule(h_div_w, pixels)
            height, width = schedule.image_size
            table[aspect][pixels] = {"width": width, "height": height, "scales": schedule.num_scales}
    return table


@PromptServer.instance.routes.get(OUTPUT_SIZES_ROUTE)
async def get_output_sizes(request):
    from aiohttp import web   # ComfyUI's server dependency; imported here so the node tests run without it
    return web.json_response(output_size_table())
