/** A new workflow, from typed-in cash flows or from a ledger uploaded with tus. */

import { parseTyped } from "./cashflows.js";
import { announce, clearError, formatBytes, formatNumber, fromTemplate, h, showError } from "./dom.js";
import { session } from "./session.js";
import { forgetUnfinished, unfinishedUploads, uploadLedger } from "./uploads.js";

const PROGRESS_SAID_EVERY = 0.1;

function numberOrNull(input) {
  return input.value.trim() === "" || Number.isNaN(input.valueAsNumber) ? null : input.valueAsNumber;
}

function uploadLabel(upload) {
  return `${upload.filename ?? "ledger"}: ${formatNumber(upload.rows)} rows, ${formatNumber(upload.periods)} periods`;
}

export function createScreen(app) {
  const element = fromTemplate("create-screen");
  const form = element.querySelector("#create-form");
  const errorBox = element.querySelector("#create-error");
  const typedSource = element.querySelector("#typed-source");
  const ledgerSource = element.querySelector("#ledger-source");
  const fileInput = element.querySelector("#create-ledger");
  const panel = element.querySelector("#upload-panel");
  const progress = element.querySelector("#upload-progress");
  const statusLine = element.querySelector("#upload-status");
  const pauseButton = element.querySelector("#upload-pause");
  const uploadError = element.querySelector("#upload-error");
  const select = element.querySelector("#create-upload");
  const unfinishedList = element.querySelector("#unfinished-uploads");
  let stopWatching = null;
  let transfer = null;
  let paused = false;
  let saidProgress = -1;
  let ledgerShown = false;

  function setStatus(text) {
    if (statusLine.textContent !== text) statusLine.textContent = text;
  }

  /** The ready uploads to choose from, newest first; `justReady` (an upload) is chosen, listed or not. */
  async function loadReadyUploads(justReady = null) {
    try {
      const page = await app.api.listUploads({ limit: 50 });
      const ready = page.items.filter((upload) => upload.status === "ready");
      if (justReady && !ready.some((upload) => upload.id === justReady.id)) ready.unshift(justReady);
      const chosen = justReady?.id ?? select.value;
      select.replaceChildren(
        h("option", { value: "" }, ready.length ? "Choose a ledger" : "No ready ledger yet"),
        ...ready.map((upload) => h("option", { value: upload.id }, uploadLabel(upload))),
      );
      if (ready.some((upload) => upload.id === chosen)) select.value = chosen;
    } catch (error) {
      showError(uploadError, error);
    }
  }

  async function showUnfinished() {
    const entries = await unfinishedUploads(app.user.id);
    const items = [];
    for (const entry of entries) {
      let upload;
      try {
        upload = await app.api.upload(entry.uploadId);
      } catch (error) {
        if (error.status === 404 || error.status === 410) await forgetUnfinished(entry.storageKey);
        continue;
      }
      if (upload.status !== "uploading") {
        await forgetUnfinished(entry.storageKey);
        continue;
      }
      const share = upload.size ? upload.offset / upload.size : 0;
      items.push(
        h(
          "li",
          {},
          `${upload.filename ?? entry.filename}: ${Math.floor(share * 100)} % uploaded ` +
            `(${formatBytes(upload.offset)} of ${formatBytes(upload.size)}). Choose the same file to resume.`,
        ),
      );
    }
    unfinishedList.replaceChildren(...items);
    unfinishedList.hidden = items.length === 0;
  }

  function applyUpload(upload) {
    switch (upload.status) {
      case "uploading":
        break;
      case "processing":
        progress.value = 1;
        setStatus("Every byte is stored. Checking the ledger…");
        break;
      case "ready":
        progress.value = 1;
        pauseButton.hidden = true;
        // Chosen in the list first, then said: "Ready" means it can be used now.
        loadReadyUploads(upload).then(() =>
          setStatus(`Ready: ${formatNumber(upload.rows)} rows, ${formatNumber(upload.periods)} periods.`),
        );
        break;
      case "failed":
        pauseButton.hidden = true;
        setStatus("The ledger was not accepted.");
        showError(uploadError, { detail: `The ledger was not accepted: ${upload.error}` });
        break;
      case "expired":
        pauseButton.hidden = true;
        setStatus("The upload expired before it was complete. Choose the file again.");
        break;
      default:
        break;
    }
  }

  async function refreshUpload(uploadId) {
    try {
      applyUpload(await app.api.upload(uploadId));
    } catch (error) {
      showError(uploadError, error);
    }
  }

  /** The upload's parse is followed on `upload:<id>`, and read over HTTP when the channel may have missed some. */
  function watch(uploadId) {
    stopWatching?.();
    const refresh = () => refreshUpload(uploadId);
    stopWatching = app.live.subscribe(`upload:${uploadId}`, {
      onEvent: (frame) => {
        if (frame.event !== "upload.status") return;
        // A ready upload is read whole (its filename is not in the event) before it is offered.
        if (frame.data.status === "ready") refresh();
        else applyUpload({ ...frame.data, id: uploadId });
      },
      onSubscribed: refresh,
      onResync: refresh,
    });
  }

  async function startUpload(file) {
    clearError(uploadError);
    panel.hidden = false;
    progress.value = 0;
    saidProgress = -1;
    paused = false;
    pauseButton.textContent = "Pause upload";
    setStatus(`Starting the upload of ${file.name}…`);
    try {
      transfer = await uploadLedger({
        file,
        userId: app.user.id,
        token: () => session.token,
        onProgress(sent, total) {
          const share = total ? sent / total : 1;
          progress.value = share;
          // The status line is a live region: it is rewritten at each further tenth, not at every chunk.
          if (share - saidProgress >= PROGRESS_SAID_EVERY || share === 1) {
            saidProgress = share;
            setStatus(`Uploading ${file.name}: ${Math.floor(share * 100)} % (${formatBytes(sent)} of ${formatBytes(total)})`);
          }
        },
        onCreated: watch,
        onComplete(uploadId) {
          pauseButton.hidden = true;
          unfinishedList.hidden = true;
          refreshUpload(uploadId);
        },
        onError(error) {
          pauseButton.hidden = true;
          setStatus(`The upload of ${file.name} stopped.`);
          showError(uploadError, error);
        },
      });
      pauseButton.hidden = false;
      if (transfer.resumedFrom) setStatus(`Resuming the upload of ${file.name} where it stopped…`);
    } catch (error) {
      showError(uploadError, { detail: `The upload could not start: ${error.message ?? error}` });
    }
  }

  function showSource() {
    const ledger = form.elements.source.value === "ledger";
    typedSource.hidden = ledger;
    ledgerSource.hidden = !ledger;
    if (ledger && !ledgerShown) {
      ledgerShown = true;
      loadReadyUploads();
      showUnfinished().catch((error) => showError(uploadError, error));
    }
  }

  function requestBody() {
    const elements = form.elements;
    const parameters = { discount_rate: numberOrNull(elements["parameters.discount_rate"]) };
    const simulations = numberOrNull(elements["parameters.simulations"]);
    const volatility = numberOrNull(elements["parameters.volatility"]);
    if (simulations !== null) parameters.simulations = simulations;
    if (volatility !== null) parameters.volatility = volatility;
    parameters.seed = numberOrNull(elements["parameters.seed"]);
    const body = {
      name: elements.name.value.trim(),
      description: elements.description.value.trim() || null,
      parameters,
      priority: elements.priority.value,
    };
    if (elements.source.value === "typed") {
      const typed = parseTyped(elements.cash_flows.value);
      if (typed.error) return { error: { detail: "The cash flows cannot be read.", extra: [{ key: "cash_flows", message: typed.error }] } };
      body.cash_flows = typed.values;
    } else if (select.value) {
      body.upload_id = select.value;
    } else {
      return {
        error: {
          detail: "Choose a ledger that is ready, or wait until the one you upload is ready.",
          extra: [{ key: "upload_id", message: "no ledger chosen" }],
        },
      };
    }
    return { body };
  }

  form.addEventListener("change", (event) => {
    if (event.target.name === "source") showSource();
  });
  fileInput.addEventListener("change", () => {
    const [file] = fileInput.files;
    if (file) startUpload(file);
  });
  pauseButton.addEventListener("click", () => {
    if (!transfer) return;
    paused = !paused;
    if (paused) {
      transfer.pause();
      setStatus("Upload paused.");
    } else transfer.resume();
    pauseButton.textContent = paused ? "Resume upload" : "Pause upload";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(errorBox, form);
    const { body, error } = requestBody();
    if (error) {
      showError(errorBox, error, form);
      form.querySelector("[aria-invalid]")?.focus();
      return;
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const created = await app.api.createWorkflow(body);
      if (form.elements.run_now.checked) await app.api.run(created.id).catch(() => undefined);
      announce(`Workflow ${created.name} created`);
      app.navigate(`#/workflows/${created.id}`);
    } catch (failure) {
      submit.disabled = false;
      showError(errorBox, failure, form);
      form.querySelector("[aria-invalid]")?.focus();
    }
  });

  showSource();

  return {
    element,
    title: "New workflow",
    refresh: () => {
      if (ledgerShown) loadReadyUploads();
    },
    unmount() {
      stopWatching?.();
      // An upload still going carries on only while the page shows it; choosing the file again resumes it.
      if (transfer && !paused) transfer.pause();
    },
  };
}
