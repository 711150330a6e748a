/**
 * The vendored libraries (web/vendor/), loaded when a screen first needs them rather than with the page: the tus
 * client for uploads, uPlot for the result's charts. Their hashed URLs come from the page's import map.
 */

const loaded = new Map();

function script(path, globalName) {
  if (!loaded.has(path)) {
    loaded.set(
      path,
      new Promise((resolve, reject) => {
        const element = document.createElement("script");
        element.src = import.meta.resolve(path);
        element.onload = () => resolve(window[globalName]);
        element.onerror = () => {
          loaded.delete(path);
          reject(new Error(`could not load ${path}`));
        };
        document.head.append(element);
      }),
    );
  }
  return loaded.get(path);
}

function stylesheet(path) {
  const href = import.meta.resolve(path);
  if (!document.querySelector(`link[rel="stylesheet"][href="${href}"]`)) {
    document.head.append(Object.assign(document.createElement("link"), { rel: "stylesheet", href }));
  }
}

/** tus-js-client 4.3.1 (its browser build sets `window.tus`). */
export const loadTus = () => script("./vendor/tus-js-client-4.3.1/tus.min.js", "tus");

/** uPlot 1.6.32 and its stylesheet. */
export function loadUPlot() {
  stylesheet("./vendor/uplot-1.6.32/uPlot.min.css");
  return script("./vendor/uplot-1.6.32/uPlot.iife.min.js", "uPlot");
}
