// The analysis dashboard: draws every figure from the page's JSON (json_script "dashboard-figures") into the
// element that names it (data-dashboard-figure) with the locally served plotly.min.js. No network access needed.
(function () {
  "use strict";
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
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
