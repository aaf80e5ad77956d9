// Read-only text on the Infinity nodes, as widgets, so it shows with Nodes 2.0 (Vue nodes) on and off:
//  * each sampler shows the image size (W x H) and number of scales its aspect ratio and pixel budget give.
//    The table comes from the Python side (GET /infinity/output_sizes, built from infinity_core's schedules),
//    so it is never duplicated here;
//  * Infinity Text Encode shows, after it ran, the prompt warnings the server sent (words the text encoder
//    does not know, text past 512 tokens).
// The size is a combo widget whose one choice is the size text: combos are drawn on the canvas and rendered by
// every Nodes 2.0 version (frontend 1.27's Vue nodes render no text widgets, not even the core's). The
// warnings a read-only multiline STRING widget as ComfyUI's own Preview Any node uses. Both are kept out of
// the saved workflow and the queued prompt (serialize false), so saved widget values keep their order.
// This file is served at /extensions/<pack folder>/js/, hence three levels up to ComfyUI's scripts.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { ComfyWidgets } from "../../../scripts/widgets.js";

const SAMPLERS = new Set(["InfinityBitwiseSampler", "InfinityBitwiseSamplerAdvanced"]);
const ENCODE_IMAGE = "InfinityEncodeImage";
const TEXT_ENCODE = "InfinityTextEncode";
const SIZE_WIDGET = "output_size";
const WARNINGS_WIDGET = "prompt_warnings";
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

function addReadOnlyText(node, name, label) {
    const widget = ComfyWidgets.STRING(node, name, ["STRING", { multiline: true }], app).widget;
    widget.label = label;
    widget.serialize = false;
    widget.options.serialize = false;
    widget.options.read_only = true;
    if (widget.element) widget.element.readOnly = true;
    if (widget.inputEl) widget.inputEl.readOnly = true;
    return widget;
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
        if (!outputSizes?.[aspect]) return `output: the encoded image's size (${pixels ?? "?"} budget)`;
    }
    const size = outputSizes?.[aspect]?.[pixels];
    return size ? `output ${size.width} \u00d7 ${size.height} px \u00b7 ${size.scales} scales` : "";
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
        const widget = this.widgets?.find((w) => w.name === SIZE_WIDGET);
        if (!widget) return;
        const text = outputSizeText(this);
        widget.options.values = [text];
        widget.value = text;
    };

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
        const result = onNodeCreated?.apply(this, arguments);
        const size = this.addWidget("combo", SIZE_WIDGET, "", () => this.updateInfinityOutputSize(),
                                    { values: [""], serialize: false });
        size.label = "size";
        size.serialize = false;
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

function addPromptWarnings(nodeType) {
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
        onExecuted?.apply(this, arguments);
        const text = (message?.text ?? []).join("\n");
        let widget = this.widgets?.find((w) => w.name === WARNINGS_WIDGET);
        if (!widget && text) widget = addReadOnlyText(this, WARNINGS_WIDGET, "warnings");
        if (widget) widget.value = text;
    };
}

app.registerExtension({
    name: "Infinity.NodeText",
    async setup() {
        await loadOutputSizes();
    },
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (SAMPLERS.has(nodeData.name)) addOutputSize(nodeType);
        if (nodeData.name === ENCODE_IMAGE) followEncodeImage(nodeType);
        if (nodeData.name === TEXT_ENCODE) addPromptWarnings(nodeType);
    },
});
