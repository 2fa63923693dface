// The docs page: reads /api/openapi.json with the tab's token and hands it to Swagger UI. The token
// is the console's (sessionStorage, same key: public/console/api.js), so a tab that has signed in
// to the console needs nothing more; "Try it out" sends it on every request the page makes.
const TOKEN_KEY = "sluice.token";
const DOCUMENT = "/api/openapi.json";

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem(TOKEN_KEY);

function show(message) {
  $("status").textContent = message;
  $("status").hidden = !message;
}

function askForToken(reason) {
  $("token-reason").textContent = reason;
  $("token-form").hidden = false;
  $("token-form").elements.token.focus();
  show("");
}

/** Adds the kept token to a request Swagger UI makes, unless its Authorize dialog set one. */
function withToken(req) {
  const t = token();
  if (t && !req.headers.Authorization && !req.headers.authorization) req.headers.Authorization = `Bearer ${t}`;
  return req;
}

async function load() {
  const t = token();
  $("forget").hidden = !t;
  const res = await fetch(DOCUMENT, { headers: { accept: "application/json", ...(t ? { authorization: `Bearer ${t}` } : {}) } });
  if (res.status === 401) {
    askForToken(t ? "That token was refused. Give API_TOKEN or API_READ_TOKEN." : "The API needs a token (API_TOKEN or API_READ_TOKEN).");
    return;
  }
  if (!res.ok) {
    show(`The API description could not be read: HTTP ${res.status}.`);
    return;
  }
  const spec = await res.json();
  show("");
  window.SwaggerUIBundle({
    spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No request leaves this origin: no validator badge, no remote spec.
    validatorUrl: null,
    requestInterceptor: withToken,
  });
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, ev.currentTarget.elements.token.value.trim());
  ev.currentTarget.reset();
  $("token-form").hidden = true;
  show("Loading the API description…");
  load().catch((err) => show(`The API description could not be read: ${err.message}`));
});

$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

load().catch((err) => show(`The API description could not be read: ${err.message}`));
