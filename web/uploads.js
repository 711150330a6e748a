/**
 * Ledger uploads with the stock tus client (tus-js-client 4.3.1), to roi's tus endpoint. An upload cut short (a
 * reload, a lost connection) resumes where the server's offset stands: tus-js-client keeps each upload's URL in
 * localStorage under a fingerprint of the file (here also naming the user), and `findPreviousUploads` finds it when
 * the same file is chosen again.
 */

import { ApiError } from "./api.js";
import { loadTus } from "./vendor.js";

const CHUNK_BYTES = 8 * 1024 * 1024;
const RETRY_DELAYS_MS = [0, 1000, 3000, 5000, 10_000, 20_000];

const fingerprintPrefix = (userId) => `roi/${userId}/`;
const newestFirst = (a, b) => Date.parse(b.creationTime) - Date.parse(a.creationTime);

/** The tus error as the API's: the server's `detail` when it answered with one. */
function apiErrorOf(error) {
  const response = error?.originalResponse;
  if (!response) return new ApiError(0, `The upload stopped: ${error?.message ?? error}`);
  let detail = null;
  try {
    detail = JSON.parse(response.getBody())?.detail;
  } catch {
    // no JSON body
  }
  return new ApiError(response.getStatus(), detail ?? `The upload failed (HTTP ${response.getStatus()}).`);
}

/**
 * Start (or resume) uploading `file`. Callbacks: `onProgress(sent, total)`, `onCreated(uploadId)` once the server
 * named the upload, `onComplete(uploadId)` when every byte is stored, `onError(ApiError)`.
 * Resolves to `{pause, resume, resumedFrom}`; `resumedFrom` is the stored upload it continues, or null.
 */
export async function uploadLedger({ file, userId, token, onProgress, onCreated, onComplete, onError }) {
  const tus = await loadTus();
  const idOf = (url) => url.split("/").pop();
  const upload = new tus.Upload(file, {
    endpoint: new URL("/api/uploads", location.origin).href,
    chunkSize: CHUNK_BYTES,
    retryDelays: RETRY_DELAYS_MS,
    metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
    fingerprint: (blob) => Promise.resolve(fingerprintPrefix(userId) + [blob.name, blob.size, blob.lastModified].join("/")),
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    onBeforeRequest: (request) => request.setHeader("Authorization", `Bearer ${token()}`),
    onUploadUrlAvailable: () => onCreated(idOf(upload.url)),
    onProgress,
    onSuccess: () => onComplete(idOf(upload.url)),
    onError: (error) => onError(apiErrorOf(error)),
  });
  const previous = await upload.findPreviousUploads();
  const resumedFrom = previous.sort(newestFirst)[0] ?? null;
  if (resumedFrom) upload.resumeFromPreviousUpload(resumedFrom);
  upload.start();
  return { pause: () => upload.abort(false), resume: () => upload.start(), resumedFrom };
}

/** This user's uploads that a page left unfinished: `{filename, size, uploadId, startedAt}`, newest first. */
export async function unfinishedUploads(userId) {
  const tus = await loadTus();
  const storage = tus.defaultOptions.urlStorage;
  if (!storage) return [];
  const prefix = `tus::${fingerprintPrefix(userId)}`;
  const stored = await storage.findAllUploads();
  return stored
    .filter((entry) => entry.urlStorageKey.startsWith(prefix) && entry.uploadUrl)
    .map((entry) => ({
      filename: entry.metadata?.filename ?? "a file",
      size: entry.size,
      uploadId: entry.uploadUrl.split("/").pop(),
      startedAt: entry.creationTime,
      storageKey: entry.urlStorageKey,
    }))
    .sort((a, b) => Date.parse(b.startedAt) - Date.parse(a.startedAt));
}

/** Forget an unfinished upload this browser remembers (it expired, or the server no longer has it). */
export async function forgetUnfinished(storageKey) {
  const tus = await loadTus();
  await tus.defaultOptions.urlStorage?.removeUpload(storageKey);
}
