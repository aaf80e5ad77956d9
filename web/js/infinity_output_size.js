// Shows, under each Infinity sampler, the image size (W x H) and number of scales that its aspect ratio
// and pixel budget give. The table comes from the Python side (GET /infinity/output_sizes, built from
// infinity_core's schedules), so it is never duplicated here.
// This file is served at /extensions/<pack folder>/js/, hence three levels up to ComfyUI's scripts.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const SAMPLERS = new Set(["InfinityBitwiseSampler", "InfinityBitwiseSamplerAdvanced"]);
const LINE_HEIGHT = 20;

let outputSizes = null; // {aspect preset: {pixel budget: {width, height, scales}}}

async function loadOutputSizes() {
    try {
        const response = await api.fetchApi("/infinity/output_sizes");
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        outputSizes = await response.json();
        app.graph?.setDirtyCanvas(true, false);
    } catch (error) {
        console.warn("Infinity: could not read the output size table;", error);
    }
}

function widgetValue(node, name) {
    const linked = node.inputs?.some((input) => input.name === name && input.link != null);
    return linked ? undefined : node.widgets?.find((widget) => widget.name === name)?.value;
}

function addOutputSizeLine(nodeType) {
    // {width, height, scales} for the node's current widgets, or null (linked widget, table not loaded).
    nodeType.prototype.getInfinityOutputSize = function () {
        const aspect = widgetValue(this, "aspect_ratio");
        const pixels = widgetValue(this, "pixels");
        return outputSizes?.[aspect]?.[pixels] ?? null;
    };

    const computeSize = nodeType.prototype.computeSize;
    nodeType.prototype.computeSize = function (out) {
        const size = computeSize.apply(this, arguments);
        size[1] += LINE_HEIGHT;
        return size;
    };

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
        onDrawForeground?.apply(this, arguments);
        const size = this.getInfinityOutputSize();
        if (!size || this.flags?.collapsed) return;
        ctx.save();
        ctx.font = `${LiteGraph.NODE_SUBTEXT_SIZE ?? 12}px sans-serif`;
        ctx.fillStyle = LiteGraph.NODE_TEXT_COLOR ?? "#aaa";
        ctx.textAlign = "center";
        const text = `output ${size.width} \u00d7 ${size.height} px \u00b7 ${size.scales} scales`;
        ctx.fillText(text, this.size[0] / 2, this.size[1] - LINE_HEIGHT / 2 + 4);
        ctx.restore();
    };
}

app.registerExtension({
    name: "Infinity.SamplerOutputSize",
    async setup() {
        await loadOutputSizes();
    },
    async beforeRegisterNodeDef(nodeType, nodeData) {
        if (SAMPLERS.has(nodeData.name)) addOutputSizeLine(nodeType);
    },
});
