/** The user's workflows, newest first, a page at a time (cursor), their statuses kept live by `user:<id>` events. */

import { announce, clearError, formatDate, h, showError, statusBadge } from "./dom.js";

const PAGE_SIZE = 20;
const STATUSES = ["draft", "queued", "running", "succeeded", "failed", "cancelled"];
const ACTIVE = new Set(["queued", "running"]);

export function workflowsScreen(app) {
  const rows = new Map(); // workflow id -> {row, workflow}
  let nextCursor = null;
  let total = 0;
  let loading = null;
  let readAgain = false;
  let refetchTimer = null;

  const filter = h(
    "select",
    { id: "status-filter", name: "status" },
    h("option", { value: "" }, "All"),
    STATUSES.map((status) => h("option", { value: status }, status)),
  );
  const caption = h("caption", {}, "Your workflows");
  const body = h("tbody");
  const table = h(
    "table",
    { class: "workflows", id: "workflow-table" },
    caption,
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Name", "Status", "Progress", "Created", "Actions"].map((label) => h("th", { scope: "col" }, label)),
      ),
    ),
    body,
  );
  const tableWrap = h("div", { class: "table-wrap", hidden: true }, table);
  const empty = h("p", { class: "empty", hidden: true });
  const more = h("button", { type: "button", class: "secondary", id: "load-more", hidden: true }, "Load more");
  const errorBox = h("div", { class: "error", role: "alert", id: "list-error", hidden: true });
  const element = h(
    "section",
    { "aria-labelledby": "workflows-title" },
    h(
      "div",
      { class: "title-row" },
      h("h1", { id: "workflows-title", tabindex: "-1" }, "Workflows"),
      h("a", { href: "#/workflows/new", class: "button", id: "new-workflow" }, "New workflow"),
    ),
    h("div", { class: "filters" }, h("label", { for: "status-filter" }, "Show"), filter),
    errorBox,
    tableWrap,
    empty,
    more,
  );

  function progressCell(workflow) {
    const percent = Math.round((workflow.progress ?? 0) * 100);
    return h(
      "td",
      { class: "progress-cell" },
      h("progress", { max: "1", value: String(workflow.progress ?? 0), "aria-label": `${workflow.name}: ${percent} %` }),
      h("span", { class: "percent" }, `${percent} %`),
    );
  }

  function actionsCell(workflow) {
    const cell = h("td", { class: "row-actions" });
    if (ACTIVE.has(workflow.status)) {
      cell.append(
        h(
          "button",
          { type: "button", class: "secondary small", onclick: () => act(workflow, "cancel") },
          "Cancel",
          h("span", { class: "visually-hidden" }, ` ${workflow.name}`),
        ),
      );
    } else {
      cell.append(
        h(
          "button",
          { type: "button", class: "small", onclick: () => act(workflow, "run") },
          workflow.status === "draft" ? "Run" : "Run again",
          h("span", { class: "visually-hidden" }, ` ${workflow.name}`),
        ),
      );
    }
    return cell;
  }

  function renderRow(workflow) {
    const row = h(
      "tr",
      { "data-id": workflow.id, "data-status": workflow.status },
      h("th", { scope: "row" }, h("a", { href: `#/workflows/${workflow.id}` }, workflow.name)),
      h("td", { class: "status-cell" }, statusBadge(workflow.status)),
      progressCell(workflow),
      h("td", {}, h("time", { datetime: workflow.created_at }, formatDate(workflow.created_at))),
      actionsCell(workflow),
    );
    const existing = rows.get(workflow.id);
    if (existing) existing.row.replaceWith(row);
    rows.set(workflow.id, { row, workflow });
    return row;
  }

  function showCounts() {
    caption.textContent = `Your workflows, newest first: ${rows.size} of ${total} shown`;
    empty.hidden = rows.size > 0;
    empty.textContent = filter.value
      ? `No ${filter.value} workflows.`
      : "No workflows yet. Create one to get started.";
    tableWrap.hidden = rows.size === 0;
    more.hidden = !nextCursor;
  }

  /**
   * Asked for the first page while a read is under way, it reads that page again after it: the earlier read may
   * predate what the caller knows of (a resync).
   */
  async function load({ reset }) {
    if (loading) {
      if (reset) readAgain = true;
      return loading;
    }
    loading = (async () => {
      try {
        clearError(errorBox);
        const page = await app.api.listWorkflows({
          cursor: reset ? null : nextCursor,
          status: filter.value || null,
          limit: PAGE_SIZE,
        });
        if (reset) {
          rows.clear();
          body.replaceChildren();
        }
        for (const workflow of page.items) {
          if (!rows.has(workflow.id)) body.append(renderRow(workflow));
          else renderRow(workflow);
        }
        nextCursor = page.next_cursor;
        total = page.total;
        showCounts();
      } catch (error) {
        showError(errorBox, error);
      } finally {
        loading = null;
        if (readAgain) {
          readAgain = false;
          load({ reset: true });
        }
      }
    })();
    return loading;
  }

  async function act(workflow, action) {
    clearError(errorBox);
    try {
      const answer = await app.api[action](workflow.id);
      update({ ...workflow, ...answer, progress: action === "run" ? 0 : workflow.progress });
    } catch (error) {
      showError(errorBox, error);
    }
  }

  function update(workflow) {
    const known = rows.get(workflow.id);
    if (!known) return;
    const merged = { ...known.workflow, ...workflow };
    if (filter.value && merged.status !== filter.value) {
      known.row.remove();
      rows.delete(workflow.id);
      total -= 1;
      showCounts();
      return;
    }
    const focused = known.row.contains(document.activeElement) ? document.activeElement.className : null;
    const row = renderRow(merged);
    // A re-rendered row keeps keyboard focus on its action button.
    if (focused !== null) row.querySelector(".row-actions button")?.focus();
  }

  /** A workflow this page does not show changed: created elsewhere, say. The first page is loaded again. */
  function refetchSoon() {
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(() => load({ reset: true }), 300);
  }

  const onStatus = ({ detail: frame }) => {
    const data = frame.data;
    const known = rows.get(data.id);
    if (data.deleted) {
      if (known) {
        known.row.remove();
        rows.delete(data.id);
        total -= 1;
        showCounts();
      }
      return;
    }
    if (!known) {
      if (!filter.value || filter.value === data.status) refetchSoon();
      return;
    }
    const changes = { status: data.status };
    if (data.progress !== undefined) changes.progress = data.progress;
    if (data.status === "queued") changes.progress = 0;
    if (known.workflow.status !== data.status) announce(`${known.workflow.name}: ${data.status}`);
    update({ id: data.id, ...changes });
  };
  const onResync = () => load({ reset: true });

  app.events.addEventListener("workflow.status", onStatus);
  app.events.addEventListener("resync", onResync);
  filter.addEventListener("change", () => load({ reset: true }));
  more.addEventListener("click", async () => {
    const before = rows.size;
    await load({ reset: false });
    // Keyboard users continue at the first new row rather than at the top of the page.
    [...rows.values()][before]?.row.querySelector("a")?.focus();
  });
  load({ reset: true });

  return {
    element,
    title: "Workflows",
    refresh: () => load({ reset: true }),
    unmount() {
      clearTimeout(refetchTimer);
      app.events.removeEventListener("workflow.status", onStatus);
      app.events.removeEventListener("resync", onResync);
    },
  };
}
