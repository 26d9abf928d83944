// Draws every plotly figure on the page from its JSON (<script type="application/json">) with the
// locally served plotly bundle. No network access needed.
// The bundle (about 1.5 MB) need not hold up the page: a page may load this file alone, deferred, with
// data-plotly-src="{% static 'vendor/plotly/plotly.min.js' %}" on its <script> tag; the bundle is then fetched
// without blocking and the charts are drawn when it arrives. A page that loads the bundle itself first works too.
(function () {
  "use strict";
  var me = document.currentScript;
  function draw() {
    document.querySelectorAll("[data-plotly-figure]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-plotly-figure"));
      if (!source || !window.Plotly || el.getAttribute("data-rendered") === "true") { return; }
      var figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(el, figure.data || [], figure.layout || {}, { displaylogo: false, responsive: true })
        .then(function () { el.setAttribute("data-rendered", "true"); });
    });
  }
  function start() {
    if (window.Plotly || !document.querySelector("[data-plotly-figure]")) { draw(); return; }
    var src = me && me.getAttribute("data-plotly-src");
    if (!src) { return; }
    var script = document.createElement("script");
    script.src = src;
    script.async = true;
    script.addEventListener("load", draw);
    document.head.appendChild(script);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
