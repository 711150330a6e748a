/** One workflow: its live status and steps (`workflow:<id>`), run / cancel / delete, and its result with charts. */

import { drawCharts } from "./charts.js";
import {
  announce,
  clearError,
  formatDate,
  formatNumber,
  formatPercent,
  fromTemplate,
  h,
  showError,
  statusBadge,
} from "./dom.js";

const ACTIVE = new Set(["queued", "running"]);
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

function periods(value) {
  return value === null || value === undefined ? "never" : `${formatNumber(value)} periods`;
}

export function workflowScreen(app, workflowId) {
  let workflow = null;
  let result = null;
  let resultShownFor; // `finished_at` of the run whose result is shown; undefined until the first look
  let buffered = []; // events that arrived while the workflow was being read over HTTP
  let reading = null;
  let readAgain = false;
  let chartsHandle = null;

  const title = h("h1", { id: "workflow-title", tabindex: "-1" }, "Workflow");
  const description = h("p", { class: "description", hidden: true });
  const facts = h("dl", { class: "facts" });
  const statusLine = h("p", { class: "status-line", id: "workflow-status", role: "status" });
  const overall = h("progress", { id: "workflow-progress", max: "1", value: "0", "aria-label": "Overall progress" });
  const runButton = h("button", { type: "button", id: "run-workflow" }, "Run");
  const cancelButton = h("button", { type: "button", id: "cancel-workflow", class: "secondary" }, "Cancel run");
  const deleteButton = h("button", { type: "button", id: "delete-workflow", class: "danger" }, "Delete");
  const errorBox = h("div", { class: "error", role: "alert", id: "workflow-error", hidden: true });
  const runError = h("div", { class: "error run-error", id: "run-error", hidden: true });
  const steps = h("ol", { class: "steps", id: "steps" });
  const resultBody = h("div", { id: "result" });
  const element = h(
    "article",
    { "aria-labelledby": "workflow-title", class: "workflow" },
    h("p", { class: "breadcrumb" }, h("a", { href: "#/workflows" }, "← All workflows")),
    title,
    description,
    h(
      "div",
      { class: "card status-card" },
      statusLine,
      overall,
      runError,
      h("div", { class: "actions" }, runButton, cancelButton, deleteButton),
      errorBox,
    ),
    facts,
    h("section", { "aria-labelledby": "steps-title" }, h("h2", { id: "steps-title" }, "Steps"), steps),
    h("section", { "aria-labelledby": "result-title" }, h("h2", { id: "result-title" }, "Result"), resultBody),
  );

  function renderFacts() {
    const parameters = workflow.parameters;
    const rows = [
      ["Source", workflow.upload_id ? "uploaded ledger" : "typed-in cash flows"],
      ["Discount rate", formatPercent(parameters.discount_rate)],
      ["Monte Carlo runs", parameters.simulations ? formatNumber(parameters.simulations) : "none"],
      ["Volatility", formatNumber(parameters.volatility)],
      ["Seed", parameters.seed ?? "random"],
      ["Priority", workflow.priority],
      ["Created", formatDate(workflow.created_at)],
      ["Started", formatDate(workflow.started_at)],
      ["Finished", formatDate(workflow.finished_at)],
    ];
    facts.replaceChildren(...rows.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, String(value)))));
  }

  function renderStatus() {
    const percent = Math.round((workflow.progress ?? 0) * 100);
    const step = workflow.steps.find((candidate) => candidate.status === "running");
    statusLine.replaceChildren(
      statusBadge(workflow.status),
      ` ${percent} %`,
      step ? ` · step ${step.position + 1} of ${workflow.steps.length}: ${step.kind}` : "",
    );
    overall.value = workflow.progress ?? 0;
    overall.setAttribute("aria-valuetext", `${percent} %`);
    runButton.textContent = workflow.status === "draft" ? "Run" : "Run again";
    runButton.disabled = ACTIVE.has(workflow.status);
    cancelButton.disabled = !ACTIVE.has(workflow.status);
    runError.hidden = !workflow.error;
    runError.textContent = workflow.error ? `The run failed: ${workflow.error}` : "";
  }

  function renderSteps() {
    steps.replaceChildren(
      ...workflow.steps.map((step) => {
        const percent = Math.round((step.progress ?? 0) * 100);
        return h(
          "li",
          { "data-kind": step.kind, "data-status": step.status, class: `step status-${step.status}` },
          h("span", { class: "step-name" }, step.kind),
          statusBadge(step.status),
          h("progress", { max: "1", value: String(step.progress ?? 0), "aria-label": `${step.kind}: ${percent} %` }),
          h("span", { class: "percent" }, `${percent} %`),
          step.error ? h("p", { class: "step-error" }, step.error) : null,
        );
      }),
    );
  }

  function render() {
    title.textContent = workflow.name;
    document.title = `${workflow.name} · roi console`;
    description.textContent = workflow.description ?? "";
    description.hidden = !workflow.description;
    renderFacts();
    renderStatus();
    renderSteps();
  }

  /** The flows the analysis read (typed in, or summed from the ledger per period), from the API. */
  async function cashFlows() {
    try {
      const { cash_flows: values } = await app.api.cashFlows(workflow.id);
      return values ? { values } : { note: "the ledger behind this workflow is no longer kept." };
    } catch (error) {
      return { note: `the cash flows could not be fetched: ${error.detail ?? error}` };
    }
  }

  function metricList(metrics, simulation) {
    const rows = [
      ["NPV", formatNumber(metrics.npv)],
      ["IRR", formatPercent(metrics.irr)],
      ["ROI", formatPercent(metrics.roi)],
      ["Payback", periods(metrics.payback_period)],
      ["Discounted payback", periods(metrics.discounted_payback_period)],
      ["Invested", formatNumber(metrics.total_invested)],
      ["Returned", formatNumber(metrics.total_returned)],
      ["Periods", formatNumber(metrics.periods)],
    ];
    if (simulation) {
      rows.push(
        ["Simulated runs", formatNumber(simulation.runs)],
        ["NPV mean", formatNumber(simulation.npv_mean)],
        ["NPV P5 / P50 / P95", `${formatNumber(simulation.npv_p5)} / ${formatNumber(simulation.npv_p50)} / ${formatNumber(simulation.npv_p95)}`],
        ["P(NPV > 0)", formatPercent(simulation.probability_npv_positive)],
      );
    }
    return h("dl", { class: "metrics", id: "metrics" }, rows.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value))));
  }

  /** Not succeeded (now): an earlier run's result may be kept, but only asking tells, and "none" is a 409. */
  function offerEarlierResult() {
    if (workflow.status === "draft") {
      resultBody.replaceChildren(h("p", { class: "muted" }, "No result yet."));
      return;
    }
    const show = h("button", { type: "button", class: "secondary", id: "show-earlier-result" }, "Show the last result");
    show.addEventListener("click", () => showResult());
    resultBody.replaceChildren(
      h("p", { class: "muted" }, "The result of the last successful run, if there was one, is kept."),
      show,
    );
  }

  async function showResult() {
    try {
      result = await app.api.result(workflowId);
    } catch (error) {
      if (error.status === 409) {
        resultBody.replaceChildren(h("p", { class: "muted" }, "No result yet: no run has succeeded."));
        return;
      }
      resultBody.replaceChildren(h("div", { class: "error", role: "alert" }, h("p", {}, error.detail)));
      return;
    }
    const charts = h("div", { class: "charts", id: "charts" }, h("p", { class: "muted" }, "Drawing the charts…"));
    resultBody.replaceChildren(
      h("p", { class: "muted" }, `From the run that finished ${formatDate(result.finished_at)}.`),
      metricList(result.metrics, result.simulation),
      charts,
    );
    const flows = await cashFlows();
    chartsHandle?.destroy();
    chartsHandle = await drawCharts(charts, {
      flows: flows.values ?? null,
      note: flows.note ?? null,
      rate: workflow.parameters.discount_rate,
      metrics: result.metrics,
      simulation: result.simulation,
    });
  }

  function applyEvent(frame) {
    const data = frame.data;
    switch (frame.event) {
      case "workflow.status":
        if (data.deleted) {
          app.notice = null;
          announce(`${workflow.name} was deleted`);
          app.navigate("#/workflows");
          return;
        }
        if (workflow.status !== data.status) announce(`${workflow.name}: ${data.status}`);
        workflow.status = data.status;
        if (data.progress !== undefined) workflow.progress = data.progress;
        if (data.status === "running" && !workflow.started_at) workflow.started_at = frame.ts;
        if (data.status === "queued") {
          Object.assign(workflow, { progress: 0, error: null, started_at: null, finished_at: null });
          for (const step of workflow.steps) Object.assign(step, { status: "pending", progress: 0, error: null });
        }
        if (data.error) workflow.error = data.error;
        renderFacts();
        renderStatus();
        renderSteps();
        // The end of a run: skipped and cancelled steps are not published, so the whole workflow is read again.
        if (TERMINAL.has(data.status)) load();
        break;
      case "workflow.progress": {
        workflow.progress = data.progress;
        const step = workflow.steps.find((candidate) => candidate.kind === data.step);
        if (step) Object.assign(step, { status: "running", progress: data.step_progress });
        renderStatus();
        renderSteps();
        break;
      }
      case "step.status": {
        const step = workflow.steps.find((candidate) => candidate.position === data.position);
        if (step) {
          step.status = data.status;
          step.error = data.error ?? null;
          if (data.status === "succeeded") step.progress = 1;
        }
        renderStatus();
        renderSteps();
        break;
      }
      default:
        break;
    }
  }

  function onEvent(frame) {
    if (!workflow || reading) buffered.push(frame);
    else applyEvent(frame);
  }

  /**
   * Read the workflow over HTTP; events that arrive meanwhile are applied after it if they are newer. Asked while a
   * read is under way, it reads once more after that one: the earlier read may predate what the caller knows of.
   */
  async function load() {
    if (reading) {
      readAgain = true;
      return reading;
    }
    reading = (async () => {
      try {
        const fresh = await app.api.workflow(workflowId);
        workflow = fresh;
        clearError(errorBox);
        render();
        const since = Date.parse(workflow.updated_at);
        const pending = buffered;
        buffered = [];
        for (const frame of pending) if (Date.parse(frame.ts) > since) applyEvent(frame);
        if (workflow.status === "succeeded" && workflow.finished_at !== resultShownFor) {
          resultShownFor = workflow.finished_at;
          await showResult();
        } else if (resultShownFor === undefined) {
          resultShownFor = null;
          offerEarlierResult();
        }
      } catch (error) {
        if (error.status === 404) {
          resultBody.replaceChildren();
        }
        showError(errorBox, error);
      } finally {
        reading = null;
        if (readAgain) {
          readAgain = false;
          load();
        }
      }
    })();
    return reading;
  }

  async function act(action) {
    clearError(errorBox);
    try {
      await app.api[action](workflowId);
      await load();
    } catch (error) {
      showError(errorBox, error);
    }
  }

  runButton.addEventListener("click", () => act("run"));
  cancelButton.addEventListener("click", () => act("cancel"));
  deleteButton.addEventListener("click", () => {
    const dialog = fromTemplate("delete-dialog");
    document.body.append(dialog);
    dialog.addEventListener("close", async () => {
      dialog.remove();
      if (dialog.returnValue !== "delete") {
        deleteButton.focus();
        return;
      }
      try {
        await app.api.remove(workflowId);
        announce(`${workflow?.name ?? "The workflow"} was deleted`);
        app.navigate("#/workflows");
      } catch (error) {
        showError(errorBox, error);
      }
    });
    dialog.showModal();
  });

  // The first read below races the subscription: a run that ends after that read but before the server has
  // subscribed this page is in neither. Reading again once subscribed closes that gap (and shows the workflow when
  // the first read failed because the server was away).
  const stopWatching = app.live.subscribe(`workflow:${workflowId}`, {
    onEvent,
    onSubscribed: () => load(),
    onResync: () => load(),
    onError: (frame) => showError(errorBox, { detail: frame.detail ?? "This workflow cannot be followed live." }),
  });
  load();

  return {
    element,
    title: "Workflow",
    refresh: () => load(),
    unmount() {
      stopWatching();
      chartsHandle?.destroy();
    },
  };
}
