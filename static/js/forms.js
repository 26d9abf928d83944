// Forms: the error summary takes the focus when a page comes back with errors, so a keyboard or screen-reader
// user starts from the list of problems (each a link to its field); forms marked data-once disable their submit
// button after the first submit, so a double click sends one request (the server refuses a repeated submission
// token anyway). Loaded once from base.html; the guard keeps a second copy on a page from binding twice.
(function () {
  "use strict";
  if (window.visusForms) { return; }
  window.visusForms = true;

  var summary = document.querySelector("[data-error-summary]");
  if (summary) {
    summary.focus();
    summary.querySelectorAll("a[href^='#']").forEach(function (link) {
      link.addEventListener("click", function (event) {
        var target = document.getElementById(link.getAttribute("href").slice(1));
        if (!target) { return; }
        event.preventDefault();
        var control = target.matches("input, select, textarea") ? target :
          (target.closest(".field") || target).querySelector("input, select, textarea");
        (control || target).focus();
        target.scrollIntoView({ block: "center" });
      });
    });
  }

  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.submitted === "true") { event.preventDefault(); return; }
      form.dataset.submitted = "true";
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; b.setAttribute("aria-busy", "true"); });
    });
  });
})();
