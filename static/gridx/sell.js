/* Sell and Developers pages: the offer window picker (UTC, snapped to the slot grid) and copy buttons.
   No inline handlers: everything is wired here from data attributes. */
(function () {
  "use strict";

  function pad(n) { return String(n).padStart(2, "0"); }

  // datetime-local values are read and written as UTC: "2026-12-01T10:00" means 10:00 UTC.
  function toValue(ms) {
    var d = new Date(ms);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      "T" + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }
  function fromValue(value) {
    var m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(value || "");
    return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]) : null;
  }
  function human(ms) { return toValue(ms).replace("T", " ") + " UTC"; }

  function windowPicker(box) {
    var slot = (parseInt(box.dataset.slotMinutes, 10) || 60) * 60000;
    var start = box.querySelector("input[name=start]");
    var end = box.querySelector("input[name=end]");
    var summary = box.querySelector("#window-summary");
    if (!start || !end) { return; }

    function summarise(note) {
      var s = fromValue(start.value), e = fromValue(end.value), text = note || "";
      if (s !== null && e !== null) {
        var hours = (e - s) / 3600000;
        text += (text ? " " : "") + (hours > 0
          ? "Window: " + human(s) + " to " + human(e) + " (" + hours + " h)."
          : "The end must be after the start.");
      }
      if (summary) { summary.textContent = text; }
    }
    function snap(input) {
      var t = fromValue(input.value);
      if (t === null) { return ""; }
      var snapped = t - (t % slot);
      if (snapped !== t) {
        input.value = toValue(snapped);
        return "Rounded " + (input === start ? "the start" : "the end") + " down to " + human(snapped) + " (times are on the grid).";
      }
      return "";
    }
    [start, end].forEach(function (input) {
      input.addEventListener("change", function () { summarise(snap(input)); });
    });
    box.querySelectorAll("[data-window-hours]").forEach(function (button) {
      button.addEventListener("click", function () {
        var now = Date.now();
        var first = now % slot === 0 ? now : now - (now % slot) + slot;
        start.value = toValue(first);
        end.value = toValue(first + parseInt(button.dataset.windowHours, 10) * 3600000);
        summarise("");
      });
    });
    summarise("");
  }

  function copyButton(button) {
    button.addEventListener("click", function () {
      var source = document.querySelector(button.dataset.copy);
      var status = button.parentElement.querySelector(".copy-status");
      if (!source) { return; }
      var text = source.value !== undefined && source.tagName === "INPUT" ? source.value : source.textContent;
      var done = function (ok) { if (status) { status.textContent = ok ? "Copied." : "Select the text and copy it by hand."; } };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text.trim()).then(function () { done(true); }, function () { done(false); });
      } else {
        done(false);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".window-picker").forEach(windowPicker);
    document.querySelectorAll("[data-copy]").forEach(copyButton);
  });
})();
