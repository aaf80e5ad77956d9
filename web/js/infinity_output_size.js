// Read-only text on the Infinity nodes, as widgets, so it shows with Nodes 2.0 (Vue nodes) on and off:
//  * each sampler shows the image size (W x H) and number of scales its aspect ratio and pixel budget give.
//    The table comes from the Python side (GET /infinity/output_sizes, built from infinity_core's schedules),
//    so it is never duplicated here;
//  * Infinity Text Encode shows, after it ran, the prompt warnings the server sent (words the text encoder
//    does not know, text past 512 tokens).
// The widgets are the read-only multiline STRING widgets ComfyUI's own Preview Any node uses, and are kept
// out of the saved workflow and the queued prompt (serialize false), so saved widget values keep their order.
// This file is served at /extensions/<pack folder>/js/, hence three levels up to ComfyUI's scripts.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { ComfyWidgets } from "../../../scripts/widgets.js";

const SAMPLERS = new Set(["InfinityBitwiseSampler", "InfinityBitwiseSamplerAdvanced"]);
const TEXT_ENCODE = "InfinityTextEncode";
const SIZE_WIDGET = "output_size";
const WARNINGS_WIDGET = "prompt_warnings";
const SIZE_INPUTS = ["aspect_ratio", "pixels"];

let outputSizes = null; // {aspect preset: {pixel budget: {width, height, scales}}}

async function loadOutputSizes() {
    try {
        const response = await api.fetchApi("/infinity/output_sizes");
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        outputSizes = await response.json();
        for (const node of app.graph?._nodes ?? []) node.updateInfinityOutputSize?.();
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

// The text for the node's current widgets, or "" (linked widget, table not loaded).
function outputSizeText(node) {
    if (isLinked(node, "encoded_image")) return "size: that of the encoded image";
    const size = outputSizes?.[widgetValue(node, "aspect_ratio")]?.[widgetValue(node, "pixels")];
    return size ? `output ${size.width} \u00d7 ${size.height} px \u00b7 ${size.scales} scales` : "";
}

function addOutputSize(nodeType) {
    nodeType.prototype.updateInfinityOutputSize = function () {
        const widget = this.widgets?.find((w) => w.name === SIZE_WIDGET);
        if (widget) widget.value = outputSizeText(this);
    };

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
        const result = onNodeCreated?.apply(this, arguments);
        addReadOnlyText(this, SIZE_WIDGET, "output");
        for (const name of SIZE_INPUTS) {
            const widget = this.widgets?.find((w) => w.name === name);
            if (!widget) continue;
            const callback = widget.callback;
            widget.callback = (...args) => {
                const value = callback?.apply(widget, args);
                this.updateInfinityOutputSize();
                return value;
            };
        }
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
        if (nodeData.name === TEXT_ENCODE) addPromptWarnings(nodeType);
    },
});
