// The analysis dashboard: draws every figure from the page's JSON (json_script "dashboard-figures") into the
// element that names it (data-dashboard-figure) with the locally served plotly.min.js. No network access needed.
// While a refresh of the stored analyses runs (data-refreshing on the freshness note), asks the status URL every
// few seconds and reloads the page once new analyses are stored (their time differs from the one shown).
(function () {
  "use strict";
  var POLL_MS = 3000;
  function draw() {
    var source = document.getElementById("dashboard-figures");
    if (!source || !window.Plotly) { return; }
    var figures = JSON.parse(source.textContent);
    document.querySelectorAll("[data-dashboard-figure]").forEach(function (el) {
      var figure = figures[el.getAttribute("data-dashboard-figure")];
      if (!figure) { return; }
      window.Plotly.newPlot(el, figure.data || [], figure.layout || {}, { displaylogo: false, responsive: true })
        .then(function () { el.setAttribute("data-rendered", "true"); });
    });
  }
  function poll() {
    var box = document.querySelector("[data-dashboard-status]");
    if (!box || box.getAttribute("data-refreshing") !== "true") { return; }
    var shown = box.getAttribute("data-computed-at") || "";
    var note = box.querySelector("[data-testid='refresh-note']");
    function ask() {
      fetch(box.getAttribute("data-dashboard-status"), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("status " + response.status); }
          return response.json();
        })
        .then(function (state) {
          if ((state.computed_at || "") !== shown) {
            if (note) { note.textContent = "New figures are ready: loading them."; }
            box.setAttribute("data-refreshing", "done");
            window.location.reload();
          } else if (state.refreshing) {
            window.setTimeout(ask, POLL_MS);
          } else {
            box.setAttribute("data-refreshing", "stopped");
            if (note) {
              note.textContent = !state.error ? "The refresh stopped without new figures: open this page again to retry."
                : state.error + (state.retry_at ? " It is tried again on the first visit after " + new Date(state.retry_at).toLocaleString() + "."
                  : " Open this page again to retry.");
            }
          }
        })
        .catch(function () {
          if (note) { note.textContent = "Could not ask whether the new figures are ready; retrying."; }
          window.setTimeout(ask, POLL_MS * 3);
        });
    }
    window.setTimeout(ask, POLL_MS);
  }
  function start() { draw(); poll(); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
