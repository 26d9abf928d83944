// Drag-and-drop uploads for a case: one request per file, a progress bar each, the server's outcome
// per file (accepted, duplicate, rejected with the reason), and a retry for failed files only.
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
    return { file: file, li: li, bar: bar, outcome: outcome };
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
    if (state === "failed" || state === "rejected") {
      var retry = document.createElement("button");
      retry.type = "button"; retry.className = "button"; retry.textContent = "Retry";
      retry.addEventListener("click", function () {
        item.li.removeChild(retry);
        item.li.removeAttribute("data-outcome");
        item.bar.value = 0; item.outcome.textContent = "waiting";
        queue.push(item); next();
      });
      item.li.appendChild(retry);
    }
  }

  function send(item) {
    var xhr = new XMLHttpRequest();
    var form = new FormData();
    form.append("file", item.file, item.file.name);
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
        finish(item, "accepted", "accepted", body.preview_url);
      } else if (xhr.status === 200 && body.outcome === "duplicate") {
        finish(item, "duplicate", "duplicate: this file is already in the case");
      } else if (body.error) {
        finish(item, "rejected", "rejected: " + body.error.message);
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
