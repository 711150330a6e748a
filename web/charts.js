/**
 * The result's charts, drawn with uPlot 1.6.32: the cash flows per period, their running discounted sum with the
 * discounted payback point, and the simulated NPV's P5–P95 range with its median. Each chart is a figure with a
 * caption saying what it shows in words, and the numbers behind the first two in a table.
 */

import { cumulativeDiscounted } from "./cashflows.js";
import { formatNumber, formatPercent, h } from "./dom.js";
import { loadUPlot } from "./vendor.js";

const HEIGHT = 260;
const TABLE_ROWS_MAX = 1000;
const PERIOD_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000];
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

const color = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function figure(id, title, summary, ...extra) {
  const plot = h("div", { class: "plot", role: "img", "aria-label": `${title}. ${summary}` });
  const element = h(
    "figure",
    { class: "chart", id },
    h("figcaption", {}, h("strong", {}, title), " ", summary),
    plot,
    ...extra,
  );
  return { element, plot };
}

function numbersTable(flows, cumulative) {
  const shown = flows.slice(0, TABLE_ROWS_MAX);
  return h(
    "details",
    { class: "numbers" },
    h("summary", {}, "The numbers"),
    h(
      "table",
      {},
      h(
        "caption",
        {},
        flows.length > TABLE_ROWS_MAX ? `The first ${TABLE_ROWS_MAX} of ${flows.length} periods` : "Every period",
      ),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Period", "Cash flow", "Cumulative discounted"].map((label) => h("th", { scope: "col" }, label)),
        ),
      ),
      h(
        "tbody",
        {},
        shown.map((value, period) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, String(period)),
            h("td", {}, formatNumber(value)),
            h("td", {}, formatNumber(cumulative[period])),
          ),
        ),
      ),
    ),
  );
}

function axisFont() {
  return `12px ${getComputedStyle(document.body).fontFamily}`;
}

function baseAxes(yLabel) {
  const stroke = color("--ink-muted");
  const grid = { stroke: color("--grid"), width: 1 };
  return [
    { label: "Period", stroke, grid, font: axisFont(), labelFont: axisFont(), incrs: PERIOD_STEPS, space: 40 },
    {
      label: yLabel,
      stroke,
      grid,
      font: axisFont(),
      labelFont: axisFont(),
      size: 64,
      values: (u, ticks) => ticks.map((tick) => compact.format(tick)),
    },
  ];
}

function withZero(uPlot) {
  return (u, min, max) => uPlot.rangeNum(Math.min(0, min), Math.max(0, max), 0.1, true);
}

/** A horizontal line at y = 0 across the plotting area. */
function drawZeroLine(u) {
  const y = Math.round(u.valToPos(0, "y", true));
  const { ctx, bbox } = u;
  ctx.save();
  ctx.strokeStyle = color("--ink-muted");
  ctx.lineWidth = 1 * devicePixelRatio;
  ctx.beginPath();
  ctx.moveTo(bbox.left, y);
  ctx.lineTo(bbox.left + bbox.width, y);
  ctx.stroke();
  ctx.restore();
}

function cashFlowChart(uPlot, flows) {
  const periods = flows.map((_, period) => period);
  const inflows = flows.map((value) => (value >= 0 ? value : null));
  const outflows = flows.map((value) => (value < 0 ? value : null));
  const bars = uPlot.paths.bars({ size: [0.7, 48] });
  const invested = flows.filter((value) => value < 0).reduce((sum, value) => sum - value, 0);
  const returned = flows.filter((value) => value > 0).reduce((sum, value) => sum + value, 0);
  const { element, plot } = figure(
    "chart-cash-flows",
    "Cash flow per period.",
    `${flows.length} periods: ${formatNumber(invested)} invested (below zero), ${formatNumber(returned)} returned (above).`,
  );
  const options = {
    height: HEIGHT,
    scales: { x: { time: false, range: (u, min, max) => [min - 0.6, max + 0.6] }, y: { range: withZero(uPlot) } },
    axes: baseAxes("Cash flow"),
    series: [
      { label: "Period" },
      { label: "Inflow", stroke: color("--chart-in"), fill: color("--chart-in"), paths: bars, points: { show: false } },
      { label: "Outflow", stroke: color("--chart-out"), fill: color("--chart-out"), paths: bars, points: { show: false } },
    ],
    hooks: { draw: [drawZeroLine] },
  };
  return { element, plot, options, data: [periods, inflows, outflows] };
}

function cumulativeChart(uPlot, flows, cumulative, metrics) {
  const periods = flows.map((_, period) => period);
  const payback = metrics.discounted_payback_period;
  const summary =
    payback === null
      ? `The running sum never climbs back to zero: the investment is not recovered in ${flows.length} periods.`
      : `It crosses zero at period ${formatNumber(payback)}, the discounted payback (marked), and ends at the NPV, ${formatNumber(metrics.npv)}.`;
  const { element, plot } = figure("chart-cumulative", "Cumulative discounted cash flow.", summary);

  function drawPayback(u) {
    drawZeroLine(u);
    if (payback === null || payback === undefined) return;
    const { ctx, bbox } = u;
    const x = u.valToPos(payback, "x", true);
    const y = u.valToPos(0, "y", true);
    const ratio = devicePixelRatio;
    ctx.save();
    ctx.strokeStyle = color("--chart-marker");
    ctx.fillStyle = color("--chart-marker");
    ctx.setLineDash([4 * ratio, 4 * ratio]);
    ctx.lineWidth = 1.5 * ratio;
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.beginPath();
    ctx.arc(x, y, 6 * ratio, 0, 2 * Math.PI);
    ctx.fill();
    ctx.font = `${12 * ratio}px ${getComputedStyle(document.body).fontFamily}`;
    ctx.textAlign = "left";
    const label = `payback ${formatNumber(payback)}`;
    const width = ctx.measureText(label).width;
    const left = x + 8 * ratio + width < bbox.left + bbox.width ? x + 8 * ratio : x - 8 * ratio - width;
    ctx.fillText(label, left, bbox.top + 14 * ratio);
    ctx.restore();
  }

  const options = {
    height: HEIGHT,
    scales: { x: { time: false, range: (u, min, max) => [min - 0.25, max + 0.25] }, y: { range: withZero(uPlot) } },
    axes: baseAxes("Cumulative"),
    series: [
      { label: "Period" },
      {
        label: "Cumulative discounted",
        stroke: color("--chart-line"),
        width: 2,
        points: { show: flows.length <= 60, size: 6, fill: color("--chart-line") },
      },
    ],
    hooks: { draw: [drawPayback] },
  };
  return { element, plot, options, data: [periods, cumulative] };
}

function npvChart(uPlot, simulation) {
  const { npv_p5: p5, npv_p50: p50, npv_p95: p95, npv_mean: mean } = simulation;
  const low = Math.min(p5, mean, 0);
  const high = Math.max(p95, mean, 0);
  const pad = (high - low || Math.abs(high) || 1) * 0.12;
  const { element, plot } = figure(
    "chart-npv",
    `Simulated NPV, ${formatNumber(simulation.runs)} runs.`,
    `5 % of runs end below ${formatNumber(p5)}, half below ${formatNumber(p50)}, 95 % below ${formatNumber(p95)}; ` +
      `the mean is ${formatNumber(mean)}. NPV is above zero in ${formatPercent(simulation.probability_npv_positive)} ` +
      "of runs. The service reports these percentiles, not every run's NPV, so the box spans P5 to P95 with the " +
      "median marked, and the tails beyond them are not drawn.",
    h("p", { class: "probability", id: "probability-positive" }, `P(NPV > 0) = ${formatPercent(simulation.probability_npv_positive)}`),
  );

  function drawRange(u) {
    const { ctx, bbox } = u;
    const ratio = devicePixelRatio;
    const x = (value) => u.valToPos(value, "x", true);
    const top = bbox.top + bbox.height * 0.4;
    const height = bbox.height * 0.32;
    const font = `${12 * ratio}px ${getComputedStyle(document.body).fontFamily}`;
    ctx.save();
    ctx.font = font;
    ctx.fillStyle = color("--chart-box");
    ctx.strokeStyle = color("--chart-box-edge");
    ctx.lineWidth = 1.5 * ratio;
    ctx.fillRect(x(p5), top, x(p95) - x(p5), height);
    ctx.strokeRect(x(p5), top, x(p95) - x(p5), height);
    ctx.strokeStyle = color("--chart-marker");
    ctx.lineWidth = 3 * ratio;
    ctx.beginPath();
    ctx.moveTo(x(p50), top);
    ctx.lineTo(x(p50), top + height);
    ctx.stroke();
    ctx.fillStyle = color("--chart-marker");
    ctx.beginPath();
    const centre = top + height / 2;
    const size = 6 * ratio;
    ctx.moveTo(x(mean), centre - size);
    ctx.lineTo(x(mean) + size, centre);
    ctx.lineTo(x(mean), centre + size);
    ctx.lineTo(x(mean) - size, centre);
    ctx.closePath();
    ctx.fill();
    ctx.strokeStyle = color("--ink-muted");
    ctx.lineWidth = 1 * ratio;
    ctx.setLineDash([4 * ratio, 4 * ratio]);
    ctx.beginPath();
    ctx.moveTo(x(0), bbox.top);
    ctx.lineTo(x(0), bbox.top + bbox.height);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = color("--ink");
    ctx.textAlign = "center";
    ctx.fillText("P5", x(p5), top - 6 * ratio);
    ctx.fillText("P50", x(p50), top - 6 * ratio);
    ctx.fillText("P95", x(p95), top - 6 * ratio);
    ctx.fillText("mean ◆", x(mean), top + height + 16 * ratio);
    ctx.fillText("NPV = 0", x(0), bbox.top + 12 * ratio);
    ctx.restore();
  }

  const axes = baseAxes("");
  axes[0] = { ...axes[0], label: "NPV", incrs: undefined, values: (u, ticks) => ticks.map((tick) => compact.format(tick)) };
  axes[1] = { show: false };
  const options = {
    height: 200,
    legend: { show: false },
    cursor: { show: false },
    scales: { x: { time: false, range: () => [low - pad, high + pad] }, y: { range: () => [0, 1] } },
    axes,
    series: [{}, { show: false }],
    hooks: { draw: [drawRange] },
  };
  return { element, plot, options, data: [[low - pad, high + pad], [null, null]] };
}

/**
 * Draw the result's charts into `container`. `flows` may be null (the cash flows are not known to this browser):
 * `note` then says why, and only the simulation is drawn. Returns `{destroy}`.
 */
export async function drawCharts(container, { flows, note, rate, metrics, simulation }) {
  const uPlot = await loadUPlot();
  const charts = [];
  const parts = [];
  if (flows?.length) {
    const cumulative = cumulativeDiscounted(flows, rate);
    const npv = cumulative[cumulative.length - 1];
    if (metrics.npv !== null && Math.abs(npv - metrics.npv) > 1e-6 * Math.max(1, Math.abs(metrics.npv))) {
      parts.push(h("p", { class: "muted" }, "These cash flows do not give the result's NPV: the file may have changed since the run."));
    }
    charts.push(cashFlowChart(uPlot, flows), cumulativeChart(uPlot, flows, cumulative, metrics));
    charts[1].element.append(numbersTable(flows, cumulative));
    parts.push(charts[0].element, charts[1].element);
  } else {
    parts.push(h("p", { class: "muted" }, `No chart of the cash flows: ${note ?? "they are not known."}`));
  }
  if (simulation) {
    charts.push(npvChart(uPlot, simulation));
    parts.push(charts[charts.length - 1].element);
  } else {
    parts.push(h("p", { class: "muted" }, "No simulation ran (Monte Carlo runs were 0), so there is no NPV distribution to draw."));
  }
  container.replaceChildren(...parts);
  const width = () => Math.max(280, container.clientWidth - 2);
  const plots = charts.map((chart) => new uPlot({ ...chart.options, width: width() }, chart.data, chart.plot));
  let drawnWidth = width();
  const observer = new ResizeObserver(() => {
    if (width() === drawnWidth) return;
    drawnWidth = width();
    requestAnimationFrame(() => {
      for (const plot of plots) plot.setSize({ width: drawnWidth, height: plot.height });
    });
  });
  observer.observe(container);
  return {
    destroy() {
      observer.disconnect();
      for (const plot of plots) plot.destroy();
    },
  };
}
