// Drag-and-drop uploads for a case: one request per file, a progress bar each, the server's outcome
// per file (accepted, duplicate, refused with the reason). Only transient failures (the connection, a server
// error, a timeout) offer "Retry": a refused file would be refused again. A photograph refused as not looking
// like a fundus photograph offers to store it anyway with a reason (the gate exception, audited). After each
// accepted file the page's Files list and completion checklist are fetched again and replaced in place.
(function () {
  "use strict";
  var zone = document.querySelector("[data-upload-url]");
  if (!zone) { return; }
  var url = zone.getAttribute("data-upload-url");
  var input = zone.querySelector("input[type=file]");
  var list = document.querySelector("[data-upload-list]");
  var csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  var queue = [];
  var busy = false;
  var TRANSIENT = [0, 408, 429, 500, 502, 503, 504];

  function row(file) {
    var li = document.createElement("li");
    li.className = "upload-item";
    li.setAttribute("data-testid", "upload-item");
    var name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = 100; bar.value = 0; bar.className = "progress";
    bar.setAttribute("aria-label", "Upload progress of " + file.name);
    var outcome = document.createElement("span");
    outcome.className = "upload-outcome";
    outcome.setAttribute("data-testid", "upload-outcome");
    outcome.setAttribute("role", "status");
    outcome.textContent = "waiting";
    li.appendChild(name); li.appendChild(bar); li.appendChild(outcome);
    list.appendChild(li);
    return { file: file, li: li, bar: bar, outcome: outcome, reason: "" };
  }

  function again(item) {
    item.li.removeAttribute("data-outcome");
    item.bar.value = 0; item.outcome.textContent = "waiting";
    queue.push(item); next();
  }

  function retryButton(item) {
    var retry = document.createElement("button");
    retry.type = "button"; retry.className = "button"; retry.textContent = "Retry";
    retry.setAttribute("data-testid", "upload-retry");
    retry.addEventListener("click", function () { item.li.removeChild(retry); again(item); });
    item.li.appendChild(retry);
  }

  function exceptionForm(item) {
    // The coordinator knows better than the check (an unusual camera, a wide-field image): store it with a reason.
    var form = document.createElement("form");
    form.className = "gate-exception";
    form.setAttribute("data-testid", "gate-exception-form");
    var id = "gate-reason-" + Math.random().toString(36).slice(2);
    var label = document.createElement("label");
    label.setAttribute("for", id);
    label.textContent = "It is a fundus photograph because";
    var reason = document.createElement("input");
    reason.type = "text"; reason.id = id; reason.required = true; reason.maxLength = 500;
    reason.setAttribute("data-testid", "gate-exception-reason");
    var submit = document.createElement("button");
    submit.type = "submit"; submit.className = "button"; submit.textContent = "Store anyway";
    submit.setAttribute("data-testid", "gate-exception-submit");
    form.appendChild(label); form.appendChild(reason); form.appendChild(submit);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (!reason.value.trim()) { reason.focus(); return; }
      item.reason = reason.value.trim();
      item.li.removeChild(form);
      again(item);
    });
    item.li.appendChild(form);
  }

  function finish(item, state, text, previewUrl) {
    item.li.setAttribute("data-outcome", state);
    item.outcome.textContent = text;
    item.bar.value = 100;
    if (previewUrl) {
      var img = document.createElement("img");
      img.src = previewUrl; img.alt = "Preview of the accepted image"; img.className = "upload-preview";
      img.setAttribute("data-testid", "upload-preview");
      item.li.appendChild(img);
    }
    if (state === "failed") { retryButton(item); }
  }

  function refreshPage() {
    // The server renders the Files list and the checklist; fetch the page again and swap those parts in.
    var xhr = new XMLHttpRequest();
    xhr.open("GET", window.location.pathname);
    xhr.addEventListener("load", function () {
      if (xhr.status !== 200) { return; }
      var fresh = new DOMParser().parseFromString(xhr.responseText, "text/html");
      ["[data-files-region]", "[data-checklist-region]"].forEach(function (selector) {
        var now = document.querySelector(selector);
        var then = fresh.querySelector(selector);
        if (now && then) { now.innerHTML = then.innerHTML; }
      });
      document.body.setAttribute("data-files-refreshed", String(Date.now()));
    });
    xhr.send();
  }

  function send(item) {
    var xhr = new XMLHttpRequest();
    var form = new FormData();
    form.append("file", item.file, item.file.name);
    if (item.reason) { form.append("fundus_exception_reason", item.reason); }
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", csrf);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) { item.bar.value = Math.round(95 * e.loaded / e.total); }
      item.outcome.textContent = "uploading";
    });
    xhr.addEventListener("load", function () {
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
      if (xhr.status === 201) {
        finish(item, "accepted", item.reason ? "accepted (stored by exception)" : "accepted", body.preview_url);
        refreshPage();
      } else if (xhr.status === 200 && body.outcome === "duplicate") {
        finish(item, "duplicate", "duplicate: this file is already in the case");
      } else if (body.error && TRANSIENT.indexOf(xhr.status) < 0) {
        finish(item, "rejected", "refused: " + body.error.message);
        if (body.error.code === "not_fundus") { exceptionForm(item); }
      } else if (xhr.status === 413) {  // refused by a proxy in front of Visus, without our JSON body
        finish(item, "rejected", "refused: the file is larger than the upload limit");
      } else {
        finish(item, "failed", "failed (HTTP " + xhr.status + "); you can retry");
      }
      busy = false; next();
    });
    xhr.addEventListener("error", function () {
      finish(item, "failed", "failed: the connection was lost; you can retry");
      busy = false; next();
    });
    item.outcome.textContent = "uploading";
    xhr.send(form);
  }

  function next() {
    if (busy || !queue.length) { return; }
    busy = true;
    send(queue.shift());
  }

  function add(files) {
    Array.prototype.forEach.call(files, function (f) { queue.push(row(f)); });
    next();
  }

  input.addEventListener("change", function () { add(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach(function (t) {
    zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.add("dragging"); });
  });
  ["dragleave", "drop"].forEach(function (t) {
    zone.addEventListener(t, function (e) { e.preventDefault(); zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (e) { add(e.dataTransfer.files); });
})();
