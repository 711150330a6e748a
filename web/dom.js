/** Small DOM helpers shared by the console's screens. Text always goes in as text, never as HTML. */

/**
 * An element: `h("p", {class: "hint"}, "text", child)`. Attributes whose value is null, undefined or false are left
 * out; `on<event>` attributes add listeners.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/** A copy of the `<template id="…">` in the page. */
export function fromTemplate(id) {
  return document.getElementById(id).content.firstElementChild.cloneNode(true);
}

const politeRegion = () => document.getElementById("announcer");

/** Said by screen readers without moving focus (status changes, progress milestones). */
export function announce(text) {
  const region = politeRegion();
  region.textContent = "";
  // A new text node in a cleared region is announced even when it repeats the previous message.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/**
 * Show an API error in `box` (a `role="alert"` element): its `detail`, and each field that `extra` names, also
 * marked on the form's matching control (`name` equal to the error's `key`).
 */
export function showError(box, error, form = null) {
  clearError(box, form);
  const lines = [h("p", {}, error.detail ?? String(error))];
  const fields = (error.extra ?? []).filter((item) => item && item.message);
  if (fields.length) {
    lines.push(h("ul", {}, fields.map((item) => h("li", {}, fieldName(form, item.key), item.message))));
  }
  if (error.retryAfterS) lines.push(h("p", {}, `Try again in ${formatDuration(error.retryAfterS)}.`));
  box.replaceChildren(...lines);
  box.hidden = false;
  for (const item of fields) {
    const control = form?.elements.namedItem(item.key ?? "");
    if (control instanceof HTMLElement) {
      control.setAttribute("aria-invalid", "true");
      control.setAttribute("aria-describedby", [control.dataset.hint, box.id].filter(Boolean).join(" "));
    }
  }
}

/** "Label: " of the form's control named `key` (the API names fields by their dotted path), else "key: ". */
function fieldName(form, key) {
  if (!key) return "";
  const control = form?.elements.namedItem(key);
  const label = control?.id ? form.querySelector(`label[for="${control.id}"]`) : null;
  const name = label ? label.firstChild.textContent.trim() : key;
  return `${name}: `;
}

export function clearError(box, form = null) {
  box.replaceChildren();
  box.hidden = true;
  for (const control of form?.querySelectorAll("[aria-invalid]") ?? []) {
    control.removeAttribute("aria-invalid");
    if (control.dataset.hint) control.setAttribute("aria-describedby", control.dataset.hint);
    else control.removeAttribute("aria-describedby");
  }
}

const numbers = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const percents = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
const dates = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export const formatNumber = (value) => (value === null || value === undefined ? "—" : numbers.format(value));
export const formatPercent = (value) => (value === null || value === undefined ? "—" : percents.format(value));
export const formatDate = (value) => (value ? dates.format(new Date(value)) : "—");

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${numbers.format(value)} ${units[unit]}`;
}

export function formatDuration(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  return `${Math.round(seconds / 60)} min`;
}

/** A status as a badge: text always, colour as a second cue only. */
export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}
