/**
 * The roi console: a page of hash routes over roi's public API. This module holds the session, the live
 * connection and the router; each screen is a module that returns `{element, title, unmount?, refresh?}`.
 */

import { createApi } from "./api.js";
import { passwordScreen, registerScreen, signInScreen } from "./auth.js";
import { createScreen } from "./create.js";
import { announce } from "./dom.js";
import { LiveEvents, State } from "./live-events.js";
import { session } from "./session.js";
import { workflowScreen } from "./workflow.js";
import { workflowsScreen } from "./workflows.js";

const main = document.getElementById("main");
const account = document.getElementById("account");
const connection = document.getElementById("connection");
const who = document.getElementById("who");
const RETRY_START_MS = 1000;
const RETRY_MAX_MS = 15_000;
const SESSION_ENDED = "Your session has ended. Sign in again.";

const app = {
  api: createApi({ token: () => session.token, onTokenRefused: () => endSession(SESSION_ENDED) }),
  user: null,
  live: null,
  /** Events of the `user:<id>` channel, by event name ("workflow.status", "upload.status"), and "resync". */
  events: new EventTarget(),
  /** A sentence for the sign-in screen to show once (why the user is there). */
  notice: null,
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  signIn,
  changePassword,
};

const routes = [
  { pattern: /^#\/sign-in$/, screen: signInScreen, signedIn: false },
  { pattern: /^#\/register$/, screen: registerScreen, signedIn: false },
  { pattern: /^#\/account\/password$/, screen: passwordScreen, signedIn: true },
  { pattern: /^#\/workflows$/, screen: workflowsScreen, signedIn: true },
  { pattern: /^#\/workflows\/new$/, screen: createScreen, signedIn: true },
  { pattern: /^#\/workflows\/([0-9a-fA-F-]{36})$/, screen: workflowScreen, signedIn: true },
];

let current = null;
let routed = false;

function route() {
  const hash = location.hash || "#/workflows";
  const found = routes.map((entry) => ({ entry, match: hash.match(entry.pattern) })).find(({ match }) => match);
  if (!found) return app.navigate("#/workflows");
  if (found.entry.signedIn && !app.user) return app.navigate("#/sign-in");
  if (!found.entry.signedIn && app.user) return app.navigate("#/workflows");
  current?.unmount?.();
  current = found.entry.screen(app, ...found.match.slice(1));
  main.replaceChildren(current.element);
  document.title = `${current.title} · roi console`;
  // After a navigation, focus moves to the new screen's heading, so a screen reader reads where the user now is;
  // on the first load it stays at the top of the page, where the skip link is.
  if (routed) current.element.querySelector("h1")?.focus();
  routed = true;
}

function showConnection(state) {
  const labels = {
    [State.CONNECTING]: "Live updates: connecting…",
    [State.OPEN]: "Live updates: on",
    [State.RECONNECTING]: "Live updates: reconnecting…",
    [State.UNAUTHORIZED]: "Live updates: signed out",
    [State.CLOSED]: "Live updates: off",
  };
  const text = labels[state] ?? "Live updates: starting";
  const wasDown = connection.dataset.state === State.RECONNECTING;
  connection.dataset.state = state;
  if (connection.textContent !== text) connection.textContent = text;
  // Back after an outage: what the events cannot replay (a request that failed meanwhile) is loaded again.
  if (state === State.OPEN && wasDown) current?.refresh?.();
}

async function checkToken() {
  try {
    await app.api.me();
    return true;
  } catch (error) {
    return error.status === 401 ? false : null;
  }
}

async function beginSession() {
  app.user = await app.api.me();
  who.textContent = `${app.user.name} · ${app.user.email}`;
  account.hidden = false;
  startLive();
}

function startLive() {
  app.live = new LiveEvents({
    token: () => session.token,
    checkToken,
    onStateChange: showConnection,
    onUnauthorized: () => endSession(SESSION_ENDED),
  });
  // A screen that read before the channel's first subscription may have missed what changed in between; later
  // subscriptions resume with `since`, so only the first one asks screens to read again.
  let caughtUp = false;
  app.live.subscribe(`user:${app.user.id}`, {
    onEvent: (frame) => app.events.dispatchEvent(new CustomEvent(frame.event, { detail: frame })),
    onSubscribed: () => {
      if (caughtUp) return;
      caughtUp = true;
      app.events.dispatchEvent(new CustomEvent("resync"));
    },
    onResync: () => app.events.dispatchEvent(new CustomEvent("resync")),
  });
  app.live.connect();
}

async function signIn(token, remember) {
  session.save(token, remember);
  await beginSession();
  app.navigate("#/workflows");
}

/**
 * The server revokes every token issued before the change, this one included (its socket is closed with 4401): the
 * live connection is closed first, so that close is not taken for the end of the session, and the page signs in
 * again with the new password, kept where the old token was.
 */
async function changePassword(currentPassword, newPassword) {
  const persistent = session.persistent;
  app.live?.close();
  app.live = null;
  try {
    await app.api.changePassword(currentPassword, newPassword);
  } catch (error) {
    if (app.user) startLive();
    throw error;
  }
  const { access_token: token } = await app.api.login(app.user.email, newPassword);
  session.save(token, persistent);
  await beginSession();
  app.notice = null;
  announce("Your password was changed. Other sessions were signed out.");
  app.navigate("#/workflows");
}

let ending = false;

async function endSession(notice, { logout = false } = {}) {
  if (ending || (!app.user && !session.token)) return;
  ending = true;
  if (logout) await app.api.logout().catch(() => undefined);
  ending = false;
  session.forget();
  app.live?.close();
  app.live = null;
  app.user = null;
  account.hidden = true;
  who.textContent = "";
  app.notice = notice;
  app.navigate("#/sign-in");
}

/** With a stored token: who it names, retried while the server cannot be reached. */
async function resumeSession() {
  for (let delay = RETRY_START_MS; ; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
    try {
      await beginSession();
      return;
    } catch (error) {
      if (error.status !== 0) {
        session.forget();
        app.user = null;
        app.notice = error.status === 401 ? SESSION_ENDED : error.detail;
        return;
      }
      document.getElementById("loading").textContent = `${error.detail} Next try in ${Math.round(delay / 1000)} s.`;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

// The skip link moves focus into the screen without touching the hash: "#main" is no route, and following it would
// render the screen again and lose what the user had typed.
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
document.getElementById("sign-out").addEventListener("click", () => endSession("You have signed out.", { logout: true }));
window.addEventListener("hashchange", route);
if (session.token) await resumeSession();
route();
performance.mark("console-interactive");
