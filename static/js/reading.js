/* The reading form driven by the keyboard (see the "?" help on the page), autosaved as a draft through the
   draft API with the version it was loaded with (a stale version gets a clear message instead of
   overwriting), and the time on the case (counted while the page is visible) sent with every save. */
(function () {
  "use strict";
  var form = document.querySelector("[data-read-form]");
  var help = document.getElementById("shortcut-help");
  var nextForm = document.querySelector("[data-next-form]");
  var dataElement = document.getElementById("workstation-data");
  var data = dataElement ? JSON.parse(dataElement.textContent) : {};

  /* --- help overlay ---------------------------------------------------------------------------------- */
  var helpReturn = null;
  function openHelp() {
    helpReturn = document.activeElement;
    help.hidden = false;
    help.querySelector("[data-help-close]").focus();
  }
  function closeHelp() {
    help.hidden = true;
    if (helpReturn && helpReturn.focus) { helpReturn.focus(); }
  }
  document.querySelectorAll("[data-help-open]").forEach(function (b) { b.addEventListener("click", openHelp); });
  help.querySelector("[data-help-close]").addEventListener("click", closeHelp);

  /* --- time on case ---------------------------------------------------------------------------------- */
  var counted = 0; // milliseconds counted and not yet sent
  var since = document.visibilityState === "visible" ? Date.now() : null;
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { since = Date.now(); }
    else if (since !== null) { counted += Date.now() - since; since = null; }
  });
  function takeSeconds() {
    if (since !== null) { counted += Date.now() - since; since = Date.now(); }
    var seconds = Math.floor(counted / 1000);
    counted -= seconds * 1000;
    return seconds;
  }

  /* --- the form -------------------------------------------------------------------------------------- */
  var questions = form ? Array.prototype.slice.call(form.querySelectorAll("[data-question]")) : [];
  var status = form ? form.querySelector("[data-autosave-status]") : null;
  var versionInput = form ? form.querySelector("[name=version]") : null;
  var activeIndex = 0;
  var timer = null;
  var inFlight = null;
  var stale = false;
  var pendingSubmit = null;

  function field(q) { return q.querySelector("[name=q_" + q.getAttribute("data-question") + "]"); }
  function confidence(q) { return q.querySelector("[name=c_" + q.getAttribute("data-question") + "]"); }

  function setActive(index) {
    if (!questions.length) { return; }
    activeIndex = Math.max(0, Math.min(questions.length - 1, index));
    questions.forEach(function (q, i) { q.classList.toggle("active-question", i === activeIndex); });
    questions[activeIndex].setAttribute("data-active", "true");
    questions.forEach(function (q, i) { if (i !== activeIndex) { q.removeAttribute("data-active"); } });
  }

  function say(text, kind) {
    if (!status) { return; }
    status.textContent = text;
    status.setAttribute("data-state", kind || "");
  }

  function payload() {
    var answers = {};
    var confidences = {};
    questions.forEach(function (q) {
      var input = field(q);
      var key = q.getAttribute("data-question");
      if (input && input.value !== "") {
        answers[key] = q.getAttribute("data-kind") === "integer" ? parseInt(input.value, 10) : input.value;
      }
      var c = confidence(q);
      if (c && c.value !== "") { confidences[key] = parseInt(c.value, 10); }
    });
    return { version: parseInt(versionInput.value, 10), answers: answers, confidences: confidences };
  }

  function errorText(json, code) {
    var error = json && json.error;
    if (!error) { return "The draft was not saved (" + code + ")."; }
    var parts = [error.message];
    if (error.fields) {
      Object.keys(error.fields).forEach(function (k) { parts.push([].concat(error.fields[k]).join(" ")); });
    }
    return parts.join(" ");
  }

  function save() {
    timer = null;
    if (stale || !form) { return Promise.resolve(); }
    if (inFlight) { schedule(); return inFlight; }
    var body = payload();
    var seconds = takeSeconds();
    body.seconds = seconds;
    say("Saving the draft…", "saving");
    inFlight = fetch(data.draft_url, {
      method: "PUT",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value
      },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (json) {
        if (response.ok) {
          versionInput.value = json.version;
          say("Draft saved (version " + json.version + ", " + json.seconds_on_case + " s on this case).", "saved");
        } else {
          counted += seconds * 1000; // not recorded: sent again with the next save
          var code = json && json.error && json.error.code;
          if (code === "stale" || code === "signed") {
            stale = true;
            say("This read was changed elsewhere (another tab or window) or signed there: your last change was NOT saved. Reload the page to see the read as it is now.", "stale");
          } else {
            say(errorText(json, response.status), "error");
          }
        }
      });
    }, function () {
      counted += seconds * 1000;
      say("The draft could not be saved (no connection); it will be tried again with your next change.", "error");
    }).then(function () {
      inFlight = null;
      if (pendingSubmit) {
        var submitter = pendingSubmit;
        pendingSubmit = null;
        if (form.requestSubmit) { form.requestSubmit(submitter); } else { submitter.click(); }
      }
    });
    return inFlight;
  }

  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(save, 700);
  }

  if (form) {
    setActive(0);
    questions.forEach(function (q, i) {
      q.addEventListener("focusin", function () { setActive(i); });
    });
    form.addEventListener("change", function (event) {
      var name = event.target.name || "";
      if (name.indexOf("q_") === 0 || name.indexOf("c_") === 0) { schedule(); }
    });
    form.addEventListener("submit", function (event) {
      if (timer) { clearTimeout(timer); timer = null; } // the submitted form saves everything itself
      if (inFlight) { // wait for the autosave in flight, then submit with the version it returned
        event.preventDefault();
        pendingSubmit = event.submitter || form.querySelector("[name=save]");
        return;
      }
      form.querySelector("[name=seconds]").value = takeSeconds();
    });
    var password = form.querySelector("[name=password]");
    var usernameField = form.querySelector("[name=username]");
    if (usernameField && password) {
      usernameField.addEventListener("keydown", function (event) {
        if (event.key === "Enter") { event.preventDefault(); password.focus(); }
      });
    }
    if (password) {
      password.addEventListener("keydown", function (event) {
        if (event.key === "Enter") {
          event.preventDefault();
          var sign = form.querySelector("[data-sign-button]");
          if (form.requestSubmit) { form.requestSubmit(sign); } else { sign.click(); }
        }
      });
    }
  }

  function choose(q, key) {
    var input = field(q);
    if (!input) { return false; }
    if (q.getAttribute("data-kind") === "integer") {
      input.value = key;
      input.focus();
      return true;
    }
    var options = Array.prototype.slice.call(input.options).filter(function (o) { return o.value !== ""; });
    var numeric = options.every(function (o) { return /^\d+$/.test(o.value); });
    var option = null;
    if (key === "y" || key === "n") {
      option = options.find(function (o) { return o.value === (key === "y" ? "yes" : "no"); });
    } else if (numeric) {
      option = options.find(function (o) { return o.value === key; });
    } else {
      option = options[parseInt(key, 10) - 1];
    }
    if (!option) { return false; }
    input.value = option.value;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    return true;
  }

  function confidenceTarget(q) {
    // The active question's confidence; on a question that is itself a number (overall confidence), the number.
    return confidence(q) || (q.getAttribute("data-kind") === "integer" ? field(q) : null);
  }

  function setConfidence(q, value) {
    var input = confidenceTarget(q);
    if (!input) { return; }
    input.value = Math.max(0, Math.min(100, value));
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function typing(target) {
    return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT" || target.isContentEditable);
  }

  // A question's number field (a confidence 0-100, or the overall confidence) takes digits and the keys that edit
  // them; Enter leaves it (it does not submit the form); a letter or another shortcut key leaves it and acts, so a
  // confidence typed in does not hold the shortcuts until Esc.
  function numberField(target) {
    return target && target.tagName === "INPUT" && target.type === "number" && form && form.contains(target) &&
      target.closest("[data-question]") !== null;
  }
  function leavesNumberField(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return false; }
    return event.key.length === 1 && !/^\d$/.test(event.key);
  }

  var lastAltDigit = null;
  document.addEventListener("keydown", function (event) {
    if (!help.hidden) {
      if (event.key === "Escape" || event.key === "?") { event.preventDefault(); closeHelp(); }
      return;
    }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); if (window.VisusViewer) { window.VisusViewer.stopMarking(); } return; }
      if (!numberField(event.target)) { return; }
      if (event.key === "Enter") { event.preventDefault(); event.target.blur(); return; }
      if (!leavesNumberField(event)) { return; }
      event.target.blur(); // and on to the shortcut below (the character does not go into the number)
    }
    if (event.ctrlKey || event.metaKey) { return; }
    var key = event.key;
    // A selected lesion mark takes the arrow keys: move by one image pixel (Shift: 10), Alt: resize a box (its
    // bottom-right corner, or the top-left one after X).
    var arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (arrows[key] && window.VisusViewer && window.VisusViewer.selectedMark()) {
      event.preventDefault();
      var step = event.shiftKey ? 10 : 1;
      window.VisusViewer.nudge(arrows[key][0] * step, arrows[key][1] * step, event.altKey);
      return;
    }
    var q = questions[activeIndex];
    var digit = /^Digit(\d)$/.exec(event.code || "");
    if (event.altKey) {
      if (digit && q) {
        event.preventDefault();
        var tens = parseInt(digit[1], 10) * 10;
        var current = confidenceTarget(q);
        // Alt+0 twice: 100 (a single Alt+0 is 0).
        setConfidence(q, tens === 0 && lastAltDigit === "0" && current && current.value === "0" ? 100 : tens);
        lastAltDigit = digit[1];
      }
      return;
    }
    lastAltDigit = null;
    if (key === "?") { event.preventDefault(); openHelp(); return; }
    if (key === "Escape") { if (window.VisusViewer) { window.VisusViewer.stopMarking(); window.VisusViewer.release(); } return; }
    if (key === "+" || key === "=") { if (window.VisusViewer) { event.preventDefault(); window.VisusViewer.zoom(1.5); } return; }
    if (key === "-" || key === "_") { if (window.VisusViewer) { event.preventDefault(); window.VisusViewer.zoom(1 / 1.5); } return; }
    if (window.VisusViewer) {
      var lower = key.toLowerCase();
      if (lower === "r") { window.VisusViewer.variant("redfree"); return; }
      if (lower === "c") { window.VisusViewer.variant("clahe"); return; }
      if (lower === "o") { window.VisusViewer.variant("full"); return; }
      if (lower === "p") { window.VisusViewer.mark("point"); return; }
      if (lower === "b") { window.VisusViewer.mark("box"); return; }
      if (lower === "h") { window.VisusViewer.toggleHeatmap(); return; }
      if (lower === "m") { window.VisusViewer.selectNext(); return; }
      if (lower === "x" && window.VisusViewer.selectedMark()) { window.VisusViewer.switchCorner(); return; }
    }
    if (!form) {
      if (key.toLowerCase() === "n" && nextForm) { event.preventDefault(); nextForm.submit(); }
      return;
    }
    if (key === "ArrowDown" || key === "j" || key === "J") { event.preventDefault(); setActive(activeIndex + 1); return; }
    if (key === "ArrowUp" || key === "k" || key === "K") { event.preventDefault(); setActive(activeIndex - 1); return; }
    if (key === "]") { event.preventDefault(); var up = confidenceTarget(q); if (up) { setConfidence(q, (parseInt(up.value, 10) || 0) + 5); } return; }
    if (key === "[") { event.preventDefault(); var down = confidenceTarget(q); if (down) { setConfidence(q, (parseInt(down.value, 10) || 0) - 5); } return; }
    if (key.toLowerCase() === "s") {
      // To the signature: the e-mail address when the session's first signing asks for it, else the password.
      event.preventDefault();
      var username = form.querySelector("[name=username]");
      var target = username && username.value === "" ? username : form.querySelector("[name=password]");
      if (target) { target.focus(); }
      return;
    }
    if (q && (/^\d$/.test(key) || ((key === "y" || key === "n") && q.getAttribute("data-kind") === "choice"))) {
      event.preventDefault();
      if (choose(q, key) && q.getAttribute("data-kind") !== "integer") { setActive(activeIndex + 1); }
    }
  });
})();
