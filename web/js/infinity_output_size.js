// What the Infinity nodes show beyond their widgets, in every frontend (1.27 and 1.5x) and node mode (Nodes 2.0
// on and off), through public paths only:
//  * each sampler names the image size (W x H px) its aspect ratio and size widgets give as the label of its
//    output socket: a socket label is plain text in every frontend and mode, never a menu, and it is short
//    enough not to be cut ("image 1024 x 1024 px"). The table comes from the Python side
//    (GET /infinity/output_sizes, built from infinity_core's schedules), so it is never duplicated here;
//  * Infinity Text Encode's prompt warnings (words the text encoder does not know, text past its limit) and a
//    sampler's warning (a size the model was not trained at) come as a warning toast after the run, where the
//    whole message fits, instead of a cramped box on the node;
//  * the pack's templates are listed in the order a user learns them (text to image first);
//  * a widget with a display name ("temperature" for tau) shows it in frontends before 1.28 too, which label a
//    widget with its saved name; newer ones set the label themselves, and it is left alone there.
// This file is served at /extensions/<pack folder>/js/, hence three levels up to ComfyUI's scripts.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const SAMPLERS = new Set(["InfinityBitwiseSampler", "InfinityBitwiseSamplerAdvanced"]);
const ENCODE_IMAGE = "InfinityEncodeImage";
const TEXT_ENCODE = "InfinityTextEncode";
const OUTPUT_NAME = "image data";   // the sampler's output label when no size is known
const WARNING_LIFE_MS = 20000;
const TEMPLATE_ORDER = ["Text to Image", "Image to Image", "Inpainting", "Outpainting"];
const SIZE_INPUTS = ["aspect_ratio", "pixels"];

let outputSizes = null; // {aspect preset: {pixel budget: {width, height, scales}}}

function updateAllOutputSizes() {
    const graph = app.graph;
    for (const node of graph?.nodes ?? graph?._nodes ?? []) node.updateInfinityOutputSize?.();
}

async function loadOutputSizes() {
    try {
        const response = await api.fetchApi("/infinity/output_sizes");
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        outputSizes = await response.json();
        updateAllOutputSizes();
    } catch (error) {
        console.warn("Infinity: could not read the output size table;", error);
    }
}

function isLinked(node, name) {
    return node.inputs?.some((input) => input.name === name && input.link != null) ?? false;
}

function widgetValue(node, name) {
    return isLinked(node, name) ? undefined : node.widgets?.find((widget) => widget.name === name)?.value;
}

// The node that feeds input `name` of `node`, or null (graph.links is a Map in newer frontends).
function linkedSource(node, name) {
    const graph = node.graph ?? app.graph;
    const id = node.inputs?.find((i) => i.name === name)?.link;
    if (id == null || !graph) return null;
    const link = graph.links instanceof Map ? graph.links.get(id) : graph.links?.[id];
    return link ? graph.getNodeById(link.origin_id) : null;
}

// The text for the node's current widgets (with an encoded image: that of Infinity Encode Image's aspect
// and pixels), or a note where the size is only known when the graph runs.
function outputSizeText(node) {
    let aspect = widgetValue(node, "aspect_ratio");
    let pixels = widgetValue(node, "pixels");
    if (isLinked(node, "encoded_image")) {
        const source = linkedSource(node, "encoded_image");
        aspect = source ? widgetValue(source, "aspect_ratio") : undefined;
        pixels = source ? widgetValue(source, "pixels") : undefined;
        if (!outputSizes?.[aspect]) return "image: the picture's size";
    }
    const size = outputSizes?.[aspect]?.[pixels];
    return size ? `image ${size.width} \u00d7 ${size.height} px` : OUTPUT_NAME;
}

// Run `then` after each change of the named widgets, keeping the widgets' own callbacks.
function afterWidgetChange(node, names, then) {
    for (const name of names) {
        const widget = node.widgets?.find((w) => w.name === name);
        if (!widget) continue;
        const callback = widget.callback;
        widget.callback = (...args) => {
            const value = callback?.apply(widget, args);
            then();
            return value;
        };
    }
}

function addOutputSize(nodeType) {
    nodeType.prototype.updateInfinityOutputSize = function () {
        const output = this.outputs?.[0];
        if (!output) return;
        output.label = outputSizeText(this);
        this.setDirtyCanvas?.(true, true);
    };

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
        const result = onNodeCreated?.apply(this, arguments);
        afterWidgetChange(this, SIZE_INPUTS, () => this.updateInfinityOutputSize());
        this.updateInfinityOutputSize();
        return result;
    };

    for (const hook of ["onConfigure", "onConnectionsChange"]) {
        const original = nodeType.prototype[hook];
        nodeType.prototype[hook] = function () {
            const result = original?.apply(this, arguments);
            this.updateInfinityOutputSize();
            return result;
        };
    }
}

// Infinity Encode Image's aspect and pixels set the size of the samplers it feeds.
function followEncodeImage(nodeType) {
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
        const result = onNodeCreated?.apply(this, arguments);
        afterWidgetChange(this, SIZE_INPUTS, updateAllOutputSizes);
        return result;
    };
}

// A node's warnings (its ui text): Text Encode's unknown words, a sampler's run outside the model's trained sizes.
function addWarningToasts(nodeType) {
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
        onExecuted?.apply(this, arguments);
        const text = (message?.text ?? []).join("\n");
        if (!text) return;
        const toast = app.extensionManager?.toast;
        if (toast) toast.add({ severity: "warn", summary: this.title ?? this.type, detail: text,
                               life: WARNING_LIFE_MS });
        else console.warn(`${this.title ?? this.type}: ${text}`);
    };
}

// The display names the node's definition gives its widgets (V3 inputs carry them in their options).
function displayNames(nodeData) {
    const names = {};
    for (const group of [nodeData.input?.required, nodeData.input?.optional]) {
        for (const [name, spec] of Object.entries(group ?? {})) {
            const shown = spec?.[1]?.display_name;
            if (shown && shown !== name) names[name] = shown;
        }
    }
    return names;
}

function labelWidgets(nodeType, nodeData) {
    const names = displayNames(nodeData);
    if (!Object.keys(names).length) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
        const result = onNodeCreated?.apply(this, arguments);
        for (const widget of this.widgets ?? []) {
            const unlabelled = !widget.label || widget.label === widget.name;
            if (names[widget.name] && unlabelled) widget.label = names[widget.name];
        }
        return result;
    };
}

// GET /workflow_templates lists a pack's templates in the file system's order; the frontends keep it.
function orderPackTemplates() {
    const original = api.getWorkflowTemplates?.bind(api);
    if (!original) return;
    const rank = (name) => {
        const index = TEMPLATE_ORDER.findIndex((title) => name.toLowerCase().endsWith(title.toLowerCase()));
        return index < 0 ? TEMPLATE_ORDER.length : index;
    };
    api.getWorkflowTemplates = async (...args) => {
        const templates = await original(...args);
        for (const names of Object.values(templates ?? {})) {
            if (Array.isArray(names) && names.some((name) => name.startsWith("Infinity "))) {
                names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
            }
        }
        return templates;
    };
}

orderPackTemplates();

app.registerExtension({
    name: "Infinity.NodeText",
    async setup() {
        await loadOutputSizes();
    },
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (nodeData.name.startsWith("Infinity")) labelWidgets(nodeType, nodeData);
        if (SAMPLERS.has(nodeData.name)) addOutputSize(nodeType);
        if (nodeData.name === ENCODE_IMAGE) followEncodeImage(nodeType);
        if (nodeData.name === TEXT_ENCODE || SAMPLERS.has(nodeData.name)) addWarningToasts(nodeType);
    },
});
