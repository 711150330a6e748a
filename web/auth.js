/** Sign in, register, change the password. */

import { clearError, fromTemplate, showError } from "./dom.js";

function busy(form, isBusy) {
  for (const control of form.elements) control.disabled = isBusy;
  form.setAttribute("aria-busy", String(isBusy));
}

/** The browser's own check of required and typed fields, said in the same alert box as the API's errors. */
function invalidFields(form) {
  const extra = [];
  for (const control of form.elements) {
    if (control.willValidate && !control.checkValidity()) {
      extra.push({ key: control.name, message: control.validationMessage });
    }
  }
  return extra.length ? { detail: "Please check these fields.", extra } : null;
}

/** The errors said, and focus on the first field they name, or else the first field. */
function showInvalid(errorBox, error, form) {
  showError(errorBox, error, form);
  (form.querySelector('[aria-invalid="true"]') ?? form.elements[0]).focus();
}

export function signInScreen(app) {
  const element = fromTemplate("sign-in-screen");
  const form = element.querySelector("#sign-in-form");
  const errorBox = element.querySelector("#sign-in-error");
  const notice = element.querySelector("#auth-message");
  notice.textContent = app.notice ?? "";
  notice.hidden = !app.notice;
  app.notice = null;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(errorBox, form);
    const invalid = invalidFields(form);
    if (invalid) return showInvalid(errorBox, invalid, form);
    const email = form.elements.email.value.trim();
    const remember = form.elements.remember.checked;
    busy(form, true);
    try {
      const { access_token: token } = await app.api.login(email, form.elements.password.value);
      await app.signIn(token, remember);
    } catch (error) {
      busy(form, false);
      showError(errorBox, error, form);
      form.elements.password.focus();
    }
  });
  return { element, title: "Sign in" };
}

export function registerScreen(app) {
  const element = fromTemplate("register-screen");
  const form = element.querySelector("#register-form");
  const errorBox = element.querySelector("#register-error");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(errorBox, form);
    const invalid = invalidFields(form);
    if (invalid) return showInvalid(errorBox, invalid, form);
    const name = form.elements.name.value.trim();
    const email = form.elements.email.value.trim();
    const password = form.elements.password.value;
    busy(form, true);
    try {
      await app.api.register(email, password, name);
      const { access_token: token } = await app.api.login(email, password);
      await app.signIn(token, false);
    } catch (error) {
      busy(form, false);
      showInvalid(errorBox, error, form);
    }
  });
  return { element, title: "Register" };
}

export function passwordScreen(app) {
  const element = fromTemplate("password-screen");
  const form = element.querySelector("#password-form");
  const errorBox = element.querySelector("#password-error");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(errorBox, form);
    const invalid = invalidFields(form);
    if (invalid) return showInvalid(errorBox, invalid, form);
    busy(form, true);
    try {
      await app.changePassword(form.elements.current_password.value, form.elements.new_password.value);
    } catch (error) {
      busy(form, false);
      showInvalid(errorBox, error, form);
    }
  });
  return { element, title: "Change password" };
}
