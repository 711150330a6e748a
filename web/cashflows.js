/**
 * Cash flows on the client: read from the typed-in text, or from a ledger's CSV (for the charts only: the service
 * parses the file for the analysis), and remembered per workflow, because the API does not return a workflow's
 * cash flows once it is created.
 */

const REMEMBERED = "roi.cash_flows.";
const REMEMBER_MAX = 20_000;

/** Numbers separated by commas, semicolons, spaces or new lines; `{values}` or `{error}` naming the bad one. */
export function parseTyped(text) {
  const parts = text.split(/[\s,;]+/).filter(Boolean);
  const values = [];
  for (const [index, part] of parts.entries()) {
    const value = Number(part);
    if (!Number.isFinite(value) || !/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(part)) {
      return { error: `value ${index + 1} (“${part}”) is not a number` };
    }
    values.push(value);
  }
  if (!values.length) return { error: "give at least one cash flow" };
  return { values };
}

export function remember(workflowId, values) {
  if (values.length > REMEMBER_MAX) return;
  try {
    localStorage.setItem(REMEMBERED + workflowId, JSON.stringify(values));
  } catch {
    // storage full or disabled: the charts will say that the flows are not known here
  }
}

export function remembered(workflowId) {
  try {
    const stored = localStorage.getItem(REMEMBERED + workflowId);
    return stored ? JSON.parse(stored) : null;
  } catch {
    return null;
  }
}

export function forget(workflowId) {
  localStorage.removeItem(REMEMBERED + workflowId);
}

function splitRow(line, delimiter) {
  const cells = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < line.length; i += 1) {
    const char = line[i];
    if (quoted) {
      if (char === '"' && line[i + 1] === '"') {
        cell += '"';
        i += 1;
      } else if (char === '"') quoted = false;
      else cell += char;
    } else if (char === '"') quoted = true;
    else if (char === delimiter) {
      cells.push(cell);
      cell = "";
    } else cell += char;
  }
  cells.push(cell);
  return cells;
}

/**
 * A CSV ledger's cash flows, summed per period as the service does (missing periods are zero): `{values}`, or
 * `{error}` when the file is not a CSV this simple reader understands (an XLSX workbook, say).
 */
export function parseLedgerCsv(text) {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  const headerIndex = lines.findIndex((line) => line.trim() !== "");
  if (headerIndex < 0) return { error: "the file is empty" };
  for (const delimiter of [",", ";", "\t"]) {
    const header = splitRow(lines[headerIndex], delimiter).map((name) => name.trim().toLowerCase());
    const periodColumn = header.indexOf("period");
    const flowColumn = header.indexOf("cash_flow");
    if (periodColumn < 0 || flowColumn < 0) continue;
    const sums = [];
    for (const line of lines.slice(headerIndex + 1)) {
      if (line.trim() === "") continue;
      const cells = splitRow(line, delimiter);
      const period = Number(cells[periodColumn]);
      const value = Number(cells[flowColumn]);
      if (!Number.isInteger(period) || period < 0 || !Number.isFinite(value)) return { error: "a row is not valid" };
      while (sums.length <= period) sums.push(0);
      sums[period] += value;
    }
    return { values: sums };
  }
  return { error: "no period and cash_flow columns" };
}

/** Σ cf[t] / (1+r)^t for each t: the running discounted sum. */
export function cumulativeDiscounted(values, rate) {
  let sum = 0;
  return values.map((value, period) => {
    sum += value / (1 + rate) ** period;
    return sum;
  });
}
