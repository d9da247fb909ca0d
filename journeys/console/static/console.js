// The console's only script of its own (no inline scripts: the CSP allows files from here only).
// htmx requests carry the session's CSRF token; confirmation prompts come from data-confirm.
document.addEventListener("htmx:configRequest", (event) => {
  const token = document.body.dataset.csrf;
  if (token) event.detail.headers["X-CSRF-Token"] = token;
});
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});
// A form marked data-swap-errors shows its htmx answers with 4xx statuses too (the messages).
document.addEventListener("htmx:beforeSwap", (event) => {
  const status = event.detail.xhr.status;
  const elt = event.detail.requestConfig ? event.detail.requestConfig.elt : event.detail.elt;
  if (status >= 400 && status < 500 && elt instanceof Element && elt.closest("[data-swap-errors]")) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
