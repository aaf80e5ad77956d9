"""Write the pack's example workflows: UI format in example_workflows/ (what the template browser loads) and
the same graphs in API format in tests/workflows/ (what tests and scripts queue through /prompt).

    python tools/build_example_workflows.py

The Infinity nodes' inputs, widgets and outputs are read from the nodes themselves (imported against the
comfy stand-ins in tests/comfy_stub), so a workflow always matches the schema; the few core ComfyUI nodes
used are described here. UI files leave out every optional key rather than writing null, which the
frontend's workflow schema rejects. Every example runs as-is on the demo model and makes its own input
picture with a text-to-image part, so none needs a file from the user.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infinity_core import SamplingConfig  # noqa: E402

EXAMPLES = ROOT / "example_workflows"
API_WORKFLOWS = ROOT / "tests" / "workflows"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
# Each template fits a 1600 x 1000 window (a canvas of 1600 x 857 px) at zoom >= 0.75: frontends 1.5x fit a
# template's bounds to the window at 0.75 of the fitting zoom, 1.27 opens it at the saved ZOOM. The core's own
# image template opens at about 0.73; below 0.57 (14 px text * zoom < 8 px) the frontends draw no text. So a
# graph spans at most 1580 x 850 units: text to image in four columns, the image templates in five narrower
# ones (their picture-making first row, then the second sampler's inputs). Every wire runs left to right (a
# node's inputs come from columns to its left, or from the node above it), but the ones that carry the first
# row's picture to the second sampler's inputs. Heights leave room for the previews and images a run adds
# (a sampler grows by about 200 units), so no two nodes overlap after a run, on the canvas and with Vue
# nodes, in frontends 1.27 and 1.5x: checked by tests/real_comfyui/.
TEXT_COLUMNS = ((20, 400), (460, 340), (840, 340), (1220, 340))   # (x, width): loaders and note, text, sampler, out
IMAGE_COLUMNS = ((20, 370), (415, 245), (685, 320), (1030, 320), (1375, 225))
LOADER_HEIGHT = 110                   # Vue nodes draw a loader 114 units tall whatever its saved height
SAMPLER_HEIGHT = 360
ZOOM = 0.75

# Core ComfyUI nodes the examples use: (inputs as (name, type, widget?)), outputs as (name, type))
CORE_NODES = {
    "SaveImage": ([("images", "IMAGE", False), ("filename_prefix", "STRING", True)], []),
    "PreviewImage": ([("images", "IMAGE", False)], []),
    "SolidMask": ([("value", "FLOAT", True), ("width", "INT", True), ("height", "INT", True)], [("MASK", "MASK")]),
    "MaskComposite": ([("destination", "MASK", False), ("source", "MASK", False), ("x", "INT", True),
                       ("y", "INT", True), ("operation", "COMBO", True)], [("MASK", "MASK")]),
    "ImageCrop": ([("image", "IMAGE", False), ("width", "INT", True), ("height", "INT", True), ("x", "INT", True),
                   ("y", "INT", True)], [("IMAGE", "IMAGE")]),
    "Note": ([("text", "STRING", True)], []),
}
DEMO = {"model_file": "infinity_demo_shapes.safetensors", "vae_file": "infinity_demo_shapes_vae.safetensors",
        "text_encoder_folder": "t5_demo_shapes", "dtype": "auto"}
_CORE = SamplingConfig()
SAMPLER = {"cfg": _CORE.cfg, "tau": _CORE.tau, "top_k": _CORE.top_k, "top_p": _CORE.top_p, "aspect_ratio": "1:1",
           "pixels": "0.06M", "batch_size": 1, "keep_scales": 0, "speed": _CORE.speed}   # the core's defaults at the demo's size


def infinity_node_specs() -> dict:
    """node id -> (inputs [(name, type, widget?, options)], outputs [(name, type)]) from the pack's schemas."""
    sys.path.insert(0, str(ROOT / "tests" / "comfy_stub"))
    import folder_paths
    folder_paths.reset(str(ROOT / "models"))
    spec = importlib.util.spec_from_file_location("infinity_pack", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["infinity_pack"] = pack
    spec.loader.exec_module(pack)
    nodes = asyncio.run(asyncio.run(pack.comfy_entrypoint()).get_node_list())
    specs = {}
    for cls in nodes:
        schema = cls.GET_SCHEMA()
        declared = cls.INPUT_TYPES()
        inputs = [(name, kind, kind in WIDGET_TYPES, options)
                  for group in ("required", "optional") for name, (kind, options) in declared.get(group, {}).items()]
        outputs = [(o.display_name, o.io_type) for o in schema.outputs]
        specs[schema.node_id] = (inputs, outputs)
    return specs


@dataclass
class Node:
    id: int
    type: str
    pos: tuple[int, int]
    widgets: dict = field(default_factory=dict)      # widget name -> value
    links: dict = field(default_factory=dict)        # input name -> (Node, output slot)
    height: int = 120
    width: int = 340
    title: str | None = None


class Graph:
    def __init__(self, specs: dict):
        self.specs = specs
        self.nodes: list[Node] = []

    def add(self, node_type: str, column: tuple[int, int], y_position: int, box_height: int = 120,
            title: str | None = None, **inputs) -> Node:
        """A node in `column` (x, width) at height `y_position`, `box_height` units tall; inputs are widget values or
        (source node, output slot)."""
        node = Node(len(self.nodes) + 1, node_type, (column[0], y_position), height=box_height, width=column[1],
                    title=title)
        for name, value in inputs.items():
            if isinstance(value, tuple):
                node.links[name] = value
            else:
                node.widgets[name] = value
        self.nodes.append(node)
        return node

    def _inputs(self, node: Node) -> list[tuple]:
        if node.type in CORE_NODES:
            return [(name, kind, widget, {}) for name, kind, widget in CORE_NODES[node.type][0]]
        return self.specs[node.type][0]

    def _outputs(self, node: Node) -> list[tuple]:
        return CORE_NODES[node.type][1] if node.type in CORE_NODES else self.specs[node.type][1]

    def ui(self) -> dict:
        links, link_ids = [], {}
        for node in self.nodes:
            names = [name for name, *_ in self._inputs(node)]
            for name, (source, slot) in node.links.items():
                link_id = len(links) + 1
                kind = self._outputs(source)[slot][1]
                links.append([link_id, source.id, slot, node.id, names.index(name), kind])
                link_ids[(node.id, name)] = link_id
        nodes = []
        for order, node in enumerate(self.nodes):
            inputs, values = [], []
            for name, kind, widget, options in self._inputs(node):
                if node.type == "Note":
                    break
                if widget and (node.id, name) not in link_ids and name not in node.widgets:
                    raise ValueError(f"{node.type} #{node.id}: no value for widget '{name}'")
                entry = {"name": name, "type": kind, "link": link_ids.get((node.id, name))}
                if widget:
                    entry["widget"] = {"name": name}
                inputs.append(entry)
                if widget:
                    values.append(node.widgets[name])
                    if options.get("control_after_generate"):
                        values.append("fixed")      # the saved seed reproduces the thumbnail
            outputs = []
            for slot, (name, kind) in enumerate(self._outputs(node)):
                targets = [link[0] for link in links if link[1] == node.id and link[2] == slot]
                outputs.append({"name": name, "type": kind, "links": targets})
            entry = {"id": node.id, "type": node.type, "pos": list(node.pos), "size": [node.width, node.height],
                     "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                     "properties": {"Node name for S&R": node.type},
                     "widgets_values": [node.widgets["text"]] if node.type == "Note" else values}
            if node.title:
                entry["title"] = node.title
            if node.type == "Note":
                entry.update(color="#432", bgcolor="#653", properties={})
            nodes.append(entry)
        return {"id": "00000000-0000-0000-0000-000000000000", "revision": 0, "last_node_id": len(self.nodes),
                "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [], "config": {},
                "extra": {"ds": {"scale": ZOOM, "offset": [20, 20]}}, "version": 0.4}

    def api(self) -> dict:
        prompt = {}
        for node in self.nodes:
            if node.type == "Note":
                continue
            inputs = {name: [str(source.id), slot] for name, (source, slot) in node.links.items()}
            inputs.update(node.widgets)
            prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs}
        return prompt


def loaders(graph: Graph, column: tuple[int, int]) -> tuple[Node, Node, Node]:
    encoder = graph.add("InfinityTextEncoderLoader", column, 40, LOADER_HEIGHT,
                        text_encoder_folder=DEMO["text_encoder_folder"], dtype=DEMO["dtype"])
    # the model loader's third widget (offload, optional) makes it taller in Nodes 2.0
    model = graph.add("InfinityTransformerLoader", column, 190, LOADER_HEIGHT + 40, model_file=DEMO["model_file"],
                      dtype=DEMO["dtype"], offload="none")
    vae = graph.add("InfinityVAELoader", column, 380, LOADER_HEIGHT, vae_file=DEMO["vae_file"], dtype=DEMO["dtype"])
    return encoder, model, vae


def text_to_image(graph: Graph, columns, encoder, model, vae, prompt: str, seed: int,
                  title: str | None = None) -> tuple[Node, Node]:
    """Text encode, sampler and decode in columns[1:4] from the top: (sampler, decode)."""
    cond = graph.add("InfinityTextEncode", columns[1], 40, 180, text_encoder=(encoder, 0), prompt=prompt,
                     negative_prompt="")
    codes = graph.add("InfinityBitwiseSampler", columns[2], 40, SAMPLER_HEIGHT, title=title, model=(model, 0),
                      conditioning=(cond, 0), vae=(vae, 0), seed=seed, **SAMPLER)
    image = graph.add("InfinityTokenizerDecode", columns[3], 40, 80, vae=(vae, 0), codes=(codes, 0))
    return codes, image


NOTE_MODELS = ("Runs as it is on the small demo model that comes with the pack (coloured circles, squares and "
               "triangles on a coloured background). For Infinity 2B, see the README: its files go in "
               "models/infinity and models/text_encoders, and its size is 1M.")


def build_text_to_image(specs) -> Graph:
    graph = Graph(specs)
    columns = TEXT_COLUMNS
    encoder, model, vae = loaders(graph, columns[0])
    _, image = text_to_image(graph, columns, encoder, model, vae,
                             "a red circle at the top left on a blue background", 42)
    graph.add("SaveImage", columns[3], 170, 330, images=(image, 0), filename_prefix="Infinity")
    graph.add("Note", columns[0], 540, 280, text="Text to image: write what to draw in Infinity Text Encode and "
              "press Run. The sampler draws it coarse to fine and shows the image as it forms (when ComfyUI runs "
              "with --preview-method auto).\n\n" + NOTE_MODELS)
    return graph


def input_picture(graph: Graph, prompt: str = "a red circle at the top left on a blue background"
                  ) -> tuple[Node, Node, Node, Node]:
    """The loaders and the first row, which makes the picture the other examples start from:
    (text encoder, model, VAE, decoded picture)."""
    encoder, model, vae = loaders(graph, IMAGE_COLUMNS[0])
    _, picture = text_to_image(graph, IMAGE_COLUMNS, encoder, model, vae, prompt, 42,
                               title="Infinity Bitwise Sampler (the input picture)")
    return encoder, model, vae, picture


def encode_picture(graph: Graph, vae, image, **options) -> Node:
    """Infinity Encode Image under the first sampler."""
    return graph.add("InfinityEncodeImage", IMAGE_COLUMNS[2], 690, 170, image=image, vae=(vae, 0),
                     aspect_ratio="1:1", pixels="0.06M", upscale_method="bicubic", **options)


def sampler_from_picture(graph: Graph, encoder, model, vae, encoded, prompt: str, title: str, save_prefix: str,
                         note: str, **sampler) -> None:
    """The second sampler's prompt (under the first), the sampler drawing from `encoded` (under the first
    decode), its decode and save (right of it), and the note under the save: short, as frontends 1.5x draw
    their minimap over the window's bottom right corner."""
    columns = IMAGE_COLUMNS
    cond = graph.add("InfinityTextEncode", columns[1], 270, 180, text_encoder=(encoder, 0), prompt=prompt,
                     negative_prompt="")
    codes = graph.add("InfinityBitwiseSampler", columns[3], 170, SAMPLER_HEIGHT, title=title, model=(model, 0),
                      conditioning=(cond, 0), vae=(vae, 0), encoded_image=(encoded, 0), seed=7,
                      **{**SAMPLER, **sampler})
    image = graph.add("InfinityTokenizerDecode", columns[4], 40, 80, vae=(vae, 0), codes=(codes, 0))
    graph.add("SaveImage", columns[4], 170, 270, images=(image, 0), filename_prefix=save_prefix)
    graph.add("Note", columns[4], 570, 290, text=note)


def build_image_to_image(specs) -> Graph:
    graph = Graph(specs)
    encoder, model, vae, picture = input_picture(graph)
    encoded = encode_picture(graph, vae, (picture, 0), crop="center")
    sampler_from_picture(graph, encoder, model, vae, encoded, "a yellow circle at the top left on a blue background",
                         "Infinity Bitwise Sampler (image to image)", "Infinity_img2img",
                         "Image to image: the top row draws a picture. The second sampler keeps its first 3 of 7 "
                         "steps (keep from picture: the layout) and draws the rest for its own prompt; keep more "
                         "to stay closer. Use Load Image for your own picture.", keep_scales=3)
    return graph


def build_inpaint(specs) -> Graph:
    graph = Graph(specs)
    encoder, model, vae, picture = input_picture(graph)
    canvas = graph.add("SolidMask", IMAGE_COLUMNS[0], 540, 110, value=0.0, width=256, height=256)
    square = graph.add("SolidMask", IMAGE_COLUMNS[0], 690, 110, value=1.0, width=144, height=144)
    mask = graph.add("MaskComposite", IMAGE_COLUMNS[1], 500, 150, destination=(canvas, 0), source=(square, 0),
                     x=0, y=0, operation="add")
    encoded = encode_picture(graph, vae, (picture, 0), mask=(mask, 0), crop="center")
    sampler_from_picture(graph, encoder, model, vae, encoded, "a green square at the top left on a blue background",
                         "Infinity Bitwise Sampler (inpainting)", "Infinity_inpaint",
                         "Inpainting: the top row draws a picture. The second sampler redraws what the mask covers "
                         "(white = redraw; here a square over the circle; any mask works, e.g. from the mask "
                         "editor) for its prompt and keeps the rest.")
    return graph


# The demo model draws one object per picture, so the outpainting example cuts one in half and has the new
# area complete it: the left half of a centred circle is kept, and the prompt describes the whole picture.
OUTPAINT_PROMPT = "a red circle in the center on a blue background"


def build_outpaint(specs) -> Graph:
    graph = Graph(specs)
    encoder, model, vae, picture = input_picture(graph, OUTPAINT_PROMPT)
    half = graph.add("ImageCrop", IMAGE_COLUMNS[0], 540, 150, image=(picture, 0), width=128, height=256, x=0, y=0)
    padded = graph.add("InfinityPadForOutpainting", IMAGE_COLUMNS[1], 500, 220, image=(half, 0), left=0, top=0,
                       right=128, bottom=0, feather=0, pixels="0.06M")
    encoded = encode_picture(graph, vae, (padded, 0), mask=(padded, 1), crop="disabled")
    sampler_from_picture(graph, encoder, model, vae, encoded, OUTPAINT_PROMPT,
                         "Infinity Bitwise Sampler (outpainting)", "Infinity_outpaint",
                         "Outpainting: the top row draws a picture. Pad for Outpainting extends its left half, "
                         "which cuts the circle, to the right and masks the new area; the second sampler draws it "
                         "for its prompt (the whole picture's) and keeps the old half.")
    return graph


# File names are the titles the template browser shows (it titles a pack's template with its file name).
EXAMPLE_GRAPHS = {
    "Infinity Text to Image": (build_text_to_image, "infinity_t2i_example_api.json"),
    "Infinity Image to Image": (build_image_to_image, "infinity_img2img_example_api.json"),
    "Infinity Inpainting": (build_inpaint, "infinity_inpaint_example_api.json"),
    "Infinity Outpainting": (build_outpaint, "infinity_outpaint_example_api.json"),
}


def main() -> None:
    specs = infinity_node_specs()
    for title, (build, api_name) in EXAMPLE_GRAPHS.items():
        graph = build(specs)
        (EXAMPLES / f"{title}.json").write_text(json.dumps(graph.ui(), indent=1) + "\n")
        (API_WORKFLOWS / api_name).write_text(json.dumps(graph.api(), indent=1) + "\n")
        print(f"wrote {EXAMPLES.name}/{title}.json and tests/workflows/{api_name}")


if __name__ == "__main__":
    main()
