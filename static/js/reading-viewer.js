/* The reader's deep-zoom viewer (OpenSeadragon, static/vendor): one viewer per photograph, side by side;
   original / red-free / CLAHE views (computed by the server under the read's own file URL), brightness and
   contrast, lesion marks (points and boxes, in the image's own pixels, through the marks API) and, in the
   AI-aided phase only, the AI heatmap laid over the photograph with a toggle and an opacity.
   Data comes from the page's json_script "workstation-data"; no inline script. Exposes window.VisusViewer
   for the keyboard shortcuts of reading.js. */
(function () {
  "use strict";
  var dataElement = document.getElementById("workstation-data");
  if (!dataElement || typeof OpenSeadragon === "undefined") { return; }
  var data = JSON.parse(dataElement.textContent);
  var viewers = [];
  var active = 0;
  var variant = "full";
  var filters = { brightness: 100, contrast: 100 };
  var heatmap = { shown: true, opacity: 0.5 };
  var marking = { shape: null, first: null };
  var marks = data.marks.slice();
  var hint = document.querySelector("[data-mark-hint]");
  var kindSelect = document.querySelector("[data-mark-kind]");
  var markList = document.querySelector("[data-mark-list]");
  var markEmpty = document.querySelector("[data-mark-empty]");
  var kindLabels = {};
  data.kinds.forEach(function (k) { kindLabels[k.value] = k.label; });

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) { return input.value; }
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function api(method, url, body) {
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrfToken() },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      if (response.status === 204) { return { ok: true, status: 204, json: null }; }
      return response.json().then(function (json) {
        return { ok: response.ok, status: response.status, json: json };
      }, function () { return { ok: response.ok, status: response.status, json: null }; });
    });
  }

  function errorText(result) {
    var error = result.json && result.json.error;
    if (!error) { return "The server refused the change (" + result.status + ")."; }
    var parts = [error.message];
    if (error.fields) {
      Object.keys(error.fields).forEach(function (k) { parts.push([].concat(error.fields[k]).join(" ")); });
    }
    return parts.join(" ");
  }

  function say(text) { if (hint) { hint.textContent = text; } }

  /* --- image geometry ------------------------------------------------------------------------------ */
  function base(entry) { return entry.viewer.world.getItemAt(0); }

  function scaleOf(entry) {
    // Marks are stored in the photograph's own pixels; a variant may be computed smaller.
    var item = base(entry);
    if (!item || !entry.image.width) { return 1; }
    return entry.image.width / item.getContentSize().x;
  }

  function toImage(entry, position) {
    var item = base(entry);
    var p = item.viewerElementToImageCoordinates(position);
    var s = scaleOf(entry);
    var w = entry.image.width || item.getContentSize().x * s;
    var h = entry.image.height || item.getContentSize().y * s;
    return { x: Math.min(Math.max(p.x * s, 0), w), y: Math.min(Math.max(p.y * s, 0), h) };
  }

  /* --- marks ------------------------------------------------------------------------------------------ */
  function drawMarks(entry) {
    entry.viewer.clearOverlays();
    var item = base(entry);
    if (!item) { return; }
    var s = scaleOf(entry);
    marks.forEach(function (m) {
      if (m.case_file !== entry.image.id) { return; }
      var element = document.createElement("div");
      element.className = "lesion-mark mark-" + m.kind + " mark-" + m.shape;
      element.title = kindLabels[m.kind] || m.kind;
      element.setAttribute("data-testid", "mark-overlay");
      if (m.shape === "box") {
        entry.viewer.addOverlay({ element: element, location: item.imageToViewportRectangle(m.x / s, m.y / s, m.width / s, m.height / s) });
      } else {
        entry.viewer.addOverlay({
          element: element,
          location: item.imageToViewportCoordinates(m.x / s, m.y / s),
          placement: OpenSeadragon.Placement.CENTER
        });
      }
    });
  }

  function redrawAllMarks() { viewers.forEach(drawMarks); listMarks(); }

  function listMarks() {
    if (!markList) { return; }
    markList.textContent = "";
    marks.forEach(function (m) {
      var entry = viewers.find(function (v) { return v.image.id === m.case_file; });
      var li = document.createElement("li");
      li.setAttribute("data-testid", "mark");
      li.setAttribute("data-kind", m.kind);
      li.setAttribute("data-shape", m.shape);
      var where = m.shape === "box"
        ? "box at (" + Math.round(m.x) + ", " + Math.round(m.y) + "), " + Math.round(m.width) + " × " + Math.round(m.height) + " px"
        : "point at (" + Math.round(m.x) + ", " + Math.round(m.y) + ") px";
      var text = document.createElement("span");
      text.textContent = (entry ? entry.image.label + ": " : "") + where + " ";
      li.appendChild(text);
      if (!data.signed) {
        var select = document.createElement("select");
        select.setAttribute("aria-label", "Lesion type of this mark");
        data.kinds.forEach(function (k) {
          var option = document.createElement("option");
          option.value = k.value;
          option.textContent = k.label;
          option.selected = k.value === m.kind;
          select.appendChild(option);
        });
        select.addEventListener("change", function () {
          api("PATCH", data.mark_url.replace("00000000-0000-0000-0000-000000000000", m.id), { kind: select.value }).then(function (r) {
            if (r.ok) { m.kind = r.json.kind; say("Mark changed to " + kindLabels[m.kind] + "."); } else { select.value = m.kind; say(errorText(r)); }
            redrawAllMarks();
          });
        });
        li.appendChild(select);
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link-button";
        remove.textContent = "Delete mark";
        remove.addEventListener("click", function () {
          api("DELETE", data.mark_url.replace("00000000-0000-0000-0000-000000000000", m.id)).then(function (r) {
            if (r.ok) { marks = marks.filter(function (x) { return x.id !== m.id; }); say("Mark deleted."); } else { say(errorText(r)); }
            redrawAllMarks();
          });
        });
        li.appendChild(remove);
      } else {
        var kind = document.createElement("strong");
        kind.textContent = kindLabels[m.kind] || m.kind;
        li.insertBefore(kind, text);
        text.textContent = ": " + text.textContent;
      }
      markList.appendChild(li);
    });
    if (markEmpty) { markEmpty.hidden = marks.length > 0; }
  }

  function addMark(entry, values) {
    values.case_file = entry.image.id;
    values.kind = kindSelect ? kindSelect.value : data.kinds[0].value;
    return api("POST", data.marks_url, values).then(function (r) {
      if (r.ok) {
        marks.push(r.json);
        say((kindLabels[r.json.kind] || r.json.kind) + " marked.");
      } else {
        say(errorText(r));
      }
      redrawAllMarks();
    });
  }

  function setMarking(shape) {
    if (data.signed) { return; }
    marking.shape = marking.shape === shape ? null : shape;
    marking.first = null;
    document.querySelectorAll("[data-mark-shape]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-mark-shape") === marking.shape));
    });
    viewers.forEach(function (v) { v.element.classList.toggle("marking", !!marking.shape); });
    if (marking.shape === "point") { say("Click the lesion on a photograph."); }
    else if (marking.shape === "box") { say("Click one corner of the box, then the opposite corner."); }
    else { say("Marking off."); }
  }

  function onClick(entry, event) {
    if (!marking.shape || !event.quick) { return; }
    event.preventDefaultAction = true;
    active = viewers.indexOf(entry);
    if (!entry.image.markable) { say("Lesions are marked on fundus photographs only."); return; }
    var p = toImage(entry, event.position);
    if (marking.shape === "point") {
      addMark(entry, { shape: "point", x: p.x, y: p.y, width: 0, height: 0 });
      return;
    }
    if (!marking.first || marking.first.entry !== entry) {
      marking.first = { entry: entry, x: p.x, y: p.y };
      say("Now click the opposite corner.");
      return;
    }
    var first = marking.first;
    marking.first = null;
    var box = {
      shape: "box",
      x: Math.min(first.x, p.x),
      y: Math.min(first.y, p.y),
      width: Math.abs(p.x - first.x),
      height: Math.abs(p.y - first.y)
    };
    if (box.width < 1 || box.height < 1) { say("A box needs two different corners."); return; }
    addMark(entry, box);
  }

  /* --- display: variants, filters, heatmap ------------------------------------------------------------- */
  function applyFilters() {
    var css = "brightness(" + filters.brightness / 100 + ") contrast(" + filters.contrast / 100 + ")";
    viewers.forEach(function (entry) {
      var canvas = entry.viewer.drawer && entry.viewer.drawer.canvas;
      if (canvas) { canvas.style.filter = css; }
      entry.element.setAttribute("data-filter", css);
    });
  }

  function setVariant(name) {
    if (!data.images.length || !data.images[0].variants[name]) { return; }
    variant = name;
    document.querySelectorAll("button[data-variant]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-variant") === name));
    });
    viewers.forEach(function (entry) {
      entry.element.setAttribute("data-variant", "loading");
      entry.viewer.addTiledImage({
        tileSource: { type: "image", url: entry.image.variants[name] },
        index: 0,
        replace: true,
        success: function () {
          entry.element.setAttribute("data-variant", name);
          drawMarks(entry);
        },
        error: function () { entry.element.setAttribute("data-variant", "failed"); }
      });
    });
  }

  function heatmapItems(entry) {
    var items = [];
    for (var i = 1; i < entry.viewer.world.getItemCount(); i += 1) { items.push(entry.viewer.world.getItemAt(i)); }
    return items;
  }

  function applyHeatmap() {
    viewers.forEach(function (entry) {
      heatmapItems(entry).forEach(function (item) { item.setOpacity(heatmap.shown ? heatmap.opacity : 0); });
      if (entry.image.overlays.length) {
        entry.element.setAttribute("data-heatmap", heatmap.shown ? "shown" : "hidden");
      }
    });
    var toggle = document.querySelector("[data-heatmap-toggle]");
    if (toggle) { toggle.checked = heatmap.shown; }
  }

  function addRegionButtons(entry) {
    // The regions the network zoomed into: one button each, which zooms this viewer to the region.
    var tools = document.querySelector("[data-heatmap-tools]");
    if (!tools) { return; }
    var n = 0;
    entry.image.overlays.forEach(function (overlay) {
      (overlay.regions || []).forEach(function (r) {
        n += 1;
        var button = document.createElement("button");
        button.type = "button";
        button.className = "button";
        button.textContent = "Zoomed region " + n;
        button.setAttribute("data-testid", "zoomed-region");
        button.addEventListener("click", function () {
          active = viewers.indexOf(entry);
          entry.viewer.viewport.fitBounds(new OpenSeadragon.Rect(r[0], r[1], r[2], r[3]));
        });
        tools.appendChild(button);
      });
    });
  }

  function addHeatmaps(entry) {
    var item = base(entry);
    addRegionButtons(entry);
    entry.image.overlays.forEach(function (overlay) {
      entry.viewer.addTiledImage({
        tileSource: { type: "image", url: overlay.url },
        x: 0,
        y: 0,
        width: item.getBounds().width,
        opacity: heatmap.shown ? heatmap.opacity : 0,
        success: function () { entry.element.setAttribute("data-heatmap", heatmap.shown ? "shown" : "hidden"); }
      });
    });
  }

  /* --- viewers --------------------------------------------------------------------------------------- */
  document.querySelectorAll("[data-viewer]").forEach(function (element) {
    var image = data.images[Number(element.getAttribute("data-viewer"))];
    var viewer = OpenSeadragon({
      element: element,
      prefixUrl: data.osd_images,
      tileSources: { type: "image", url: image.variants.full },
      drawer: "canvas",
      showNavigator: true,
      navigatorPosition: "BOTTOM_RIGHT",
      maxZoomPixelRatio: 4,
      visibilityRatio: 0.8,
      gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
      gestureSettingsTouch: { clickToZoom: false }
    });
    var entry = { element: element, viewer: viewer, image: image, opened: false };
    viewers.push(entry);
    viewer.addOnceHandler("open", function () {
      entry.opened = true;
      element.setAttribute("data-variant", "full");
      element.setAttribute("data-zoom", viewer.viewport.getZoom(true).toFixed(3));
      applyFilters();
      drawMarks(entry);
      addHeatmaps(entry);
    });
    viewer.addHandler("open-failed", function () { element.setAttribute("data-variant", "failed"); });
    viewer.addHandler("canvas-click", function (event) { onClick(entry, event); });
    viewer.addHandler("animation-finish", function () {
      element.setAttribute("data-zoom", viewer.viewport.getZoom(true).toFixed(3));
    });
    element.addEventListener("focus", function () { active = viewers.indexOf(entry); });
    element.addEventListener("pointerdown", function () { active = viewers.indexOf(entry); });
  });

  document.querySelectorAll("button[data-variant]").forEach(function (button) {
    if (button.tagName !== "BUTTON") { return; }
    button.addEventListener("click", function () { setVariant(button.getAttribute("data-variant")); });
  });
  document.querySelectorAll("[data-filter]").forEach(function (input) {
    if (input.tagName !== "INPUT") { return; }
    input.addEventListener("input", function () { filters[input.getAttribute("data-filter")] = Number(input.value); applyFilters(); });
  });
  var reset = document.querySelector("[data-filter-reset]");
  if (reset) {
    reset.addEventListener("click", function () {
      filters.brightness = 100; filters.contrast = 100;
      document.querySelectorAll("input[data-filter]").forEach(function (i) { i.value = 100; });
      applyFilters();
      setVariant("full");
      viewers.forEach(function (entry) { entry.viewer.viewport.goHome(); });
    });
  }
  document.querySelectorAll("[data-mark-shape]").forEach(function (button) {
    button.addEventListener("click", function () { setMarking(button.getAttribute("data-mark-shape")); });
  });
  var toggle = document.querySelector("[data-heatmap-toggle]");
  if (toggle) { toggle.addEventListener("change", function () { heatmap.shown = toggle.checked; applyHeatmap(); }); }
  var opacity = document.querySelector("[data-heatmap-opacity]");
  if (opacity) {
    opacity.addEventListener("input", function () { heatmap.opacity = Number(opacity.value) / 100; heatmap.shown = true; applyHeatmap(); });
  }
  listMarks();

  window.VisusViewer = {
    zoom: function (factor) {
      var entry = viewers[active] || viewers[0];
      if (!entry) { return; }
      entry.viewer.viewport.zoomBy(factor);
      entry.viewer.viewport.applyConstraints();
    },
    variant: setVariant,
    mark: setMarking,
    stopMarking: function () { if (marking.shape) { setMarking(marking.shape); } },
    toggleHeatmap: function () { heatmap.shown = !heatmap.shown; applyHeatmap(); }
  };
})();
