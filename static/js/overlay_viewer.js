// The AI overlay of a prediction in a zoomable viewer beside the original photograph (case page).
// Two OpenSeadragon viewers (static/vendor/openseadragon) with simple image tile sources: the original, and
// the original with the overlay laid over it. They pan and zoom together. The buttons zoom and reset, the
// checkbox shows or hides the overlay, the slider sets its opacity. Each figure keeps its viewers as
// figure.visusViewers (the browser tests read the zoom and opacity from them).
(function () {
  "use strict";
  if (!window.OpenSeadragon) { return; }
  var OSD = window.OpenSeadragon;

  function viewer(element, url) {
    return OSD({
      element: element,
      tileSources: { type: "image", url: url },
      showNavigationControl: false,
      showNavigator: false,
      gestureSettingsMouse: { clickToZoom: false },
      visibilityRatio: 1,
      maxZoomPixelRatio: 4,
      crossOriginPolicy: false,
      drawer: "canvas", // photographs may come from another origin (S3 presigned URLs): WebGL would refuse them
    });
  }

  function link(from, to) {
    // Follow the other viewer; the guard stops the echo when the followed viewer moves in turn.
    from.addHandler("viewport-change", function () {
      if (from.visusFollowing) { return; }
      to.visusFollowing = true;
      to.viewport.zoomTo(from.viewport.getZoom(), null, true);
      to.viewport.panTo(from.viewport.getCenter(), true);
      to.visusFollowing = false;
    });
  }

  document.querySelectorAll("[data-testid=overlay-viewer]").forEach(function (figure) {
    var original = viewer(figure.querySelector("[data-pane=original]"), figure.getAttribute("data-original-url"));
    var overlaid = viewer(figure.querySelector("[data-pane=overlay]"), figure.getAttribute("data-original-url"));
    var toggle = figure.querySelector("[data-control=toggle]");
    var opacity = figure.querySelector("[data-control=opacity]");
    var shown = figure.querySelector("[data-control=opacity-value]");
    var layer = null;
    figure.visusViewers = { original: original, overlaid: overlaid, layer: function () { return layer; } };
    link(original, overlaid);
    link(overlaid, original);

    function applyOpacity() {
      var value = toggle.checked ? Number(opacity.value) / 100 : 0;
      shown.textContent = opacity.value + "%";
      opacity.disabled = !toggle.checked;
      if (layer) { layer.setOpacity(value); }
      figure.setAttribute("data-overlay-opacity", String(value));
    }

    overlaid.addHandler("open", function () {
      overlaid.addTiledImage({
        tileSource: { type: "image", url: figure.getAttribute("data-overlay-url") },
        x: 0,
        y: 0,
        width: 1,
        success: function (event) {
          layer = event.item;
          applyOpacity();
          figure.setAttribute("data-ready", "true");
        },
        error: function () {
          figure.setAttribute("data-ready", "error");
        },
      });
    });

    figure.querySelectorAll("[data-action]").forEach(function (button) {
      button.addEventListener("click", function () {
        var action = button.getAttribute("data-action");
        if (action === "zoom-in") { overlaid.viewport.zoomBy(1.5); }
        if (action === "zoom-out") { overlaid.viewport.zoomBy(1 / 1.5); }
        if (action === "home") { overlaid.viewport.goHome(); }
        overlaid.viewport.applyConstraints();
      });
    });
    toggle.addEventListener("change", applyOpacity);
    opacity.addEventListener("input", applyOpacity);
  });
})();
