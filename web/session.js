/**
 * The bearer token, kept for this tab (sessionStorage) or, with "keep me signed in", for this device (localStorage).
 * Nothing else about the user is stored.
 */

const KEY = "roi.token";

export const session = {
  get token() {
    return sessionStorage.getItem(KEY) ?? localStorage.getItem(KEY);
  },

  /** Whether the token is kept for this device ("keep me signed in"). */
  get persistent() {
    return localStorage.getItem(KEY) !== null;
  },

  save(token, remember) {
    this.forget();
    (remember ? localStorage : sessionStorage).setItem(KEY, token);
  },

  forget() {
    sessionStorage.removeItem(KEY);
    localStorage.removeItem(KEY);
  },
};
