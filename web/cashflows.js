/**
 * Cash flows on the client: read from the typed-in text (checked before the API is asked), and the cumulative
 * discounted sum the payback chart draws. A workflow's flows come back from `GET /api/workflows/{id}/cash-flows`.
 */

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

/** Σ cf[t] / (1+r)^t for each t: the running discounted sum. */
export function cumulativeDiscounted(values, rate) {
  let sum = 0;
  return values.map((value, period) => {
    sum += value / (1 + rate) ** period;
    return sum;
  });
}
