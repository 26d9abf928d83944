/* The reader's deep-zoom viewer (OpenSeadragon, static/vendor): one viewer per photograph, side by side;
   original / red-free / CLAHE views (computed by the server under the read's own file URL), brightness and
   contrast, lesion marks (points and boxes, in the image's own pixels, through the marks API: added, retyped,
   deleted, and moved or resized by dragging or with the arrow keys until the read is signed) and, in the
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
  var selected = null; // the id of the mark being moved or resized
  var corner = "se"; // the selected box's corner that Alt + arrow keys move: bottom-right, or (X) top-left
  var CORNER_NAMES = { se: "bottom-right corner (its right and bottom edges)", nw: "top-left corner (its left and top edges)" };
  var drag = null; // a mark being dragged: { entry, mark, mode, start, from, moved }
  var saving = {}; // per mark id: { timer, inFlight, again }
  marks.forEach(remember);
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

  function imageSize(entry) {
    var item = base(entry);
    var s = scaleOf(entry);
    return {
      w: entry.image.width || (item ? item.getContentSize().x * s : 0),
      h: entry.image.height || (item ? item.getContentSize().y * s : 0)
    };
  }

  function imagePoint(entry, position) {
    // Unclamped: a drag that leaves the photograph still moves the mark (clamped to the photograph below).
    var p = base(entry).viewerElementToImageCoordinates(position);
    var s = scaleOf(entry);
    return { x: p.x * s, y: p.y * s };
  }

  function tolerance(entry) {
    // Eight screen pixels in image pixels at the current zoom: how near a handle or a point must be grabbed.
    var item = base(entry);
    var a = item.viewerElementToImageCoordinates(new OpenSeadragon.Point(0, 0));
    var b = item.viewerElementToImageCoordinates(new OpenSeadragon.Point(8, 0));
    return Math.abs(b.x - a.x) * scaleOf(entry);
  }

  function clamp(value, low, high) { return Math.min(Math.max(value, low), Math.max(low, high)); }

  /* --- marks ------------------------------------------------------------------------------------------ */
  function drawMarks(entry) {
    entry.viewer.clearOverlays();
    var item = base(entry);
    if (!item) { return; }
    var s = scaleOf(entry);
    marks.forEach(function (m) {
      if (m.case_file !== entry.image.id) { return; }
      var element = document.createElement("div");
      element.className = "lesion-mark mark-" + m.kind + " mark-" + m.shape + (m.id === selected ? " selected" : "");
      element.title = kindLabels[m.kind] || m.kind;
      element.setAttribute("data-testid", "mark-overlay");
      element.setAttribute("data-mark-id", m.id);
      if (m.id === selected) { element.setAttribute("data-selected", "true"); }
      if (m.shape === "box") {
        entry.viewer.addOverlay({ element: element, location: item.imageToViewportRectangle(m.x / s, m.y / s, m.width / s, m.height / s) });
        if (m.id === selected) {
          Object.keys(HANDLES).forEach(function (name) {
            var handle = document.createElement("div");
            handle.className = "mark-handle handle-" + name + (name === corner ? " keyboard" : "");
            handle.setAttribute("data-testid", "mark-handle");
            handle.setAttribute("data-handle", name);
            if (name === corner) { handle.setAttribute("data-keyboard", "true"); } // the corner Alt + arrows move
            var at = handlePoint(m, name);
            entry.viewer.addOverlay({
              element: handle,
              location: item.imageToViewportCoordinates(at.x / s, at.y / s),
              placement: OpenSeadragon.Placement.CENTER
            });
          });
        }
      } else {
        entry.viewer.addOverlay({
          element: element,
          location: item.imageToViewportCoordinates(m.x / s, m.y / s),
          placement: OpenSeadragon.Placement.CENTER
        });
      }
    });
  }

  /* --- moving and resizing marks (drag, or the arrow keys on the selected mark) ------------------------- */
  // A box's handles: which edges each one moves (n: top, s: bottom, w: left, e: right).
  var HANDLES = { nw: "nw", n: "n", ne: "ne", e: "e", se: "se", s: "s", sw: "sw", w: "w" };

  function handlePoint(m, name) {
    var x = name.indexOf("w") >= 0 ? m.x : name.indexOf("e") >= 0 ? m.x + m.width : m.x + m.width / 2;
    var y = name.indexOf("n") >= 0 ? m.y : name.indexOf("s") >= 0 ? m.y + m.height : m.y + m.height / 2;
    return { x: x, y: y };
  }

  function remember(m) { m.saved = { x: m.x, y: m.y, width: m.width, height: m.height }; }

  function hitTest(entry, p) {
    // The mark (and what of it) under an image point: a box's handle first (the selected box's before
    // others'), then a point, then a box's body; the last drawn wins.
    var tol = tolerance(entry);
    var own = marks.filter(function (m) { return m.case_file === entry.image.id; });
    var ordered = own.filter(function (m) { return m.id === selected; }).concat(own.filter(function (m) { return m.id !== selected; }));
    var i, m;
    for (i = 0; i < ordered.length; i += 1) {
      m = ordered[i];
      if (m.shape !== "box") { continue; }
      var names = Object.keys(HANDLES);
      for (var j = 0; j < names.length; j += 1) {
        var h = handlePoint(m, names[j]);
        if (Math.abs(h.x - p.x) <= tol && Math.abs(h.y - p.y) <= tol) { return { mark: m, mode: names[j] }; }
      }
    }
    for (i = own.length - 1; i >= 0; i -= 1) {
      m = own[i];
      if (m.shape === "point" && Math.abs(m.x - p.x) <= tol && Math.abs(m.y - p.y) <= tol) { return { mark: m, mode: "move" }; }
    }
    for (i = own.length - 1; i >= 0; i -= 1) {
      m = own[i];
      if (m.shape === "box" && p.x >= m.x && p.x <= m.x + m.width && p.y >= m.y && p.y <= m.y + m.height) {
        return { mark: m, mode: "move" };
      }
    }
    return null;
  }

  function reshaped(m, mode, from, dx, dy, size) {
    // The mark's new geometry, kept inside the photograph and (a box) at least one pixel wide and high.
    if (mode === "move") {
      return {
        x: clamp(from.x + dx, 0, size.w - from.width),
        y: clamp(from.y + dy, 0, size.h - from.height),
        width: from.width,
        height: from.height
      };
    }
    var left = from.x, right = from.x + from.width, top = from.y, bottom = from.y + from.height;
    if (mode.indexOf("w") >= 0) { left = clamp(left + dx, 0, right - 1); }
    if (mode.indexOf("e") >= 0) { right = clamp(right + dx, left + 1, size.w); }
    if (mode.indexOf("n") >= 0) { top = clamp(top + dy, 0, bottom - 1); }
    if (mode.indexOf("s") >= 0) { bottom = clamp(bottom + dy, top + 1, size.h); }
    return { x: left, y: top, width: right - left, height: bottom - top };
  }

  function place(m, g) { m.x = g.x; m.y = g.y; m.width = g.width; m.height = g.height; }

  function describe(m) {
    return m.shape === "box"
      ? "box at (" + Math.round(m.x) + ", " + Math.round(m.y) + "), " + Math.round(m.width) + " × " + Math.round(m.height) + " px"
      : "point at (" + Math.round(m.x) + ", " + Math.round(m.y) + ") px";
  }

  function saveGeometry(m, delay) {
    // Autosaved like the rest of the draft: one PATCH at a time per mark, the latest position sent last; a
    // refusal (signed meanwhile, outside the photograph) puts the mark back where the server has it.
    var state = saving[m.id] || (saving[m.id] = { timer: null, inFlight: false, again: false });
    if (state.timer) { clearTimeout(state.timer); }
    state.timer = setTimeout(function () {
      state.timer = null;
      if (state.inFlight) { state.again = true; return; }
      state.inFlight = true;
      var body = m.shape === "box" ? { x: m.x, y: m.y, width: m.width, height: m.height } : { x: m.x, y: m.y };
      say("Saving the mark…");
      api("PATCH", data.mark_url.replace("00000000-0000-0000-0000-000000000000", m.id), body).then(function (r) {
        state.inFlight = false;
        if (r.ok) {
          remember(r.json);
          m.saved = r.json.saved;
          if (!state.again && !state.timer) { place(m, r.json); }
          say("Mark saved: " + (kindLabels[m.kind] || m.kind) + " " + describe(m) + ".");
        } else {
          place(m, m.saved);
          say(errorText(r));
        }
        redrawAllMarks();
        if (state.again) { state.again = false; saveGeometry(m, 0); }
      }, function () {
        state.inFlight = false;
        place(m, m.saved);
        say("The mark could not be saved (no connection): it is back where it was.");
        redrawAllMarks();
      });
    }, delay);
  }

  function select(id, quiet) {
    // quiet: no hint while a drag is under way (the page must not move under the pointer).
    if (id !== selected) { corner = "se"; }
    selected = id;
    var m = marks.find(function (x) { return x.id === id; });
    if (m && !quiet) {
      say("Mark selected (" + describe(m) + "): drag it, or the arrow keys move it by one pixel (Shift: 10)" +
        (m.shape === "box" ? ", Alt + arrow keys move its " + CORNER_NAMES[corner] + ", X the other corner (drag a handle too)" : "") +
        "; Esc lets it go.");
    }
    redrawAllMarks();
  }

  function onPress(entry, event) {
    if (data.signed || marking.shape || !base(entry)) { return; }
    var p = imagePoint(entry, event.position);
    var hit = hitTest(entry, p);
    if (!hit) { return; }
    active = viewers.indexOf(entry);
    drag = {
      entry: entry,
      mark: hit.mark,
      mode: hit.mode,
      start: p,
      from: { x: hit.mark.x, y: hit.mark.y, width: hit.mark.width, height: hit.mark.height },
      moved: false
    };
    if (selected !== hit.mark.id) { select(hit.mark.id, true); }
  }

  function onDrag(entry, event) {
    if (!drag || drag.entry !== entry) { return; }
    event.preventDefaultAction = true; // the mark moves, not the photograph
    var p = imagePoint(entry, event.position);
    place(drag.mark, reshaped(drag.mark, drag.mode, drag.from, p.x - drag.start.x, p.y - drag.start.y, imageSize(entry)));
    drag.moved = true;
    drawMarks(entry);
  }

  function onRelease() {
    if (!drag) { return; }
    var done = drag;
    drag = null;
    if (done.moved) { listMarks(); saveGeometry(done.mark, 0); }
  }

  function nudge(dx, dy, resize) {
    // The arrow keys on the selected mark: move it, or (resize) move a box's keyboard corner (bottom-right, or
    // top-left after X: switchCorner), so each of its four edges; in image pixels, kept inside the photograph.
    var m = marks.find(function (x) { return x.id === selected; });
    if (!m || data.signed) { return false; }
    var entry = viewers.find(function (v) { return v.image.id === m.case_file; });
    if (!entry) { return false; }
    if (resize && m.shape !== "box") { say("A point has no size: the arrow keys without Alt move it."); return true; }
    var from = { x: m.x, y: m.y, width: m.width, height: m.height };
    place(m, reshaped(m, resize ? corner : "move", from, dx, dy, imageSize(entry)));
    redrawAllMarks();
    saveGeometry(m, 400);
    return true;
  }

  function switchCorner() {
    // X on a selected box: Alt + arrow keys move the other corner (bottom-right <-> top-left) from now on.
    var m = marks.find(function (x) { return x.id === selected; });
    if (!m || data.signed) { return false; }
    if (m.shape !== "box") { say("A point has no corners: the arrow keys move it."); return true; }
    corner = corner === "se" ? "nw" : "se";
    say("Alt + arrow keys now move the box's " + CORNER_NAMES[corner] + "; X switches back.");
    redrawAllMarks();
    return true;
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
      if (m.id === selected) { li.setAttribute("data-selected", "true"); }
      var where = describe(m);
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
        var pick = document.createElement("button");
        pick.type = "button";
        pick.className = "link-button";
        pick.setAttribute("data-testid", "mark-select");
        pick.setAttribute("aria-pressed", String(m.id === selected));
        pick.textContent = m.shape === "box" ? "Move or resize" : "Move";
        pick.addEventListener("click", function () { select(selected === m.id ? null : m.id); });
        li.appendChild(pick);
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "link-button";
        remove.textContent = "Delete mark";
        remove.addEventListener("click", function () {
          api("DELETE", data.mark_url.replace("00000000-0000-0000-0000-000000000000", m.id)).then(function (r) {
            if (r.ok) {
              marks = marks.filter(function (x) { return x.id !== m.id; });
              if (selected === m.id) { selected = null; }
              say("Mark deleted.");
            } else { say(errorText(r)); }
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
        remember(r.json);
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
    if (marking.shape && selected) { selected = null; redrawAllMarks(); }
    document.querySelectorAll("[data-mark-shape]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-mark-shape") === marking.shape));
    });
    viewers.forEach(function (v) { v.element.classList.toggle("marking", !!marking.shape); });
    if (marking.shape === "point") { say("Click the lesion on a photograph."); }
    else if (marking.shape === "box") { say("Click one corner of the box, then the opposite corner."); }
    else { say("Marking off."); }
  }

  function onClick(entry, event) {
    if (!event.quick) { return; }
    if (!marking.shape) {
      // A click on a mark selects it (to move or resize it); a click beside every mark lets the selected go.
      if (data.signed || !base(entry)) { return; }
      var hit = hitTest(entry, imagePoint(entry, event.position));
      var had = selected;
      if (hit || had) { select(hit ? hit.mark.id : null); }
      if (!hit && had) { say("Mark released."); }
      return;
    }
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
    viewer.addHandler("canvas-press", function (event) { onPress(entry, event); });
    viewer.addHandler("canvas-drag", function (event) { onDrag(entry, event); });
    viewer.addHandler("canvas-release", function () { onRelease(); });
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
    selectedMark: function () { return selected; },
    selectNext: function () {
      if (data.signed || !marks.length) { return; }
      var at = marks.findIndex(function (m) { return m.id === selected; });
      select(marks[(at + 1) % marks.length].id);
    },
    release: function () { if (selected) { select(null); say("Mark released."); } },
    nudge: nudge,
    switchCorner: switchCorner,
    toggleHeatmap: function () { heatmap.shown = !heatmap.shown; applyHeatmap(); }
  };
})();
