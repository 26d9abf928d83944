// Follows running inference jobs on the case page: polls their status, moves the progress bars, and
// reloads the page once every job has finished so the predictions appear. The polls are marked as background
// requests (X-Visus-Background), so an open page does not keep an idle session alive; once the session has
// ended (401) the page reloads, and the sign-in page says why.
(function () {
  "use strict";
  var table = document.querySelector("[data-poll-url]");
  if (!table) { return; }
  var url = table.getAttribute("data-poll-url");
  function poll() {
    fetch(url, { headers: { Accept: "application/json", "X-Visus-Background": "1" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return new Promise(function () {}); }
        return r.ok ? r.json() : Promise.reject(r.status);
      })
      .then(function (jobs) {
        var pending = false;
        jobs.forEach(function (job) {
          var row = table.querySelector('[data-job="' + job.id + '"]');
          if (!row) { return; }
          row.querySelector('[data-field="progress"]').value = job.progress;
          row.querySelector('[data-field="status"]').textContent = job.status;
          row.querySelector('[data-field="error"]').textContent = job.error || "";
          if (job.status === "queued" || job.status === "running") { pending = true; }
        });
        if (pending) { setTimeout(poll, 2000); } else { window.location.reload(); }
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 1500);
})();
