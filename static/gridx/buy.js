/* The buyer's pages: form fields marked invalid as their errors arrive, and the lease's live chart. */
(function () {
  "use strict";

  // Validation as you type swaps each field's error list in place (htmx out-of-band); mark the
  // field itself invalid, and point screen readers at the message, to match.
  function markFields(root) {
    (root || document).querySelectorAll("#bid-form ul.errorlist[id$='_error']").forEach(function (list) {
      var id = list.id.slice(0, -"_error".length);
      var hasErrors = list.children.length > 0;
      var inputs = document.querySelectorAll("#" + CSS.escape(id) + ", [id^='" + id + "_'][type=checkbox]");
      inputs.forEach(function (input) {
        if (hasErrors) {
          input.setAttribute("aria-invalid", "true");
        } else {
          input.removeAttribute("aria-invalid");
        }
        var described = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
        var at = described.indexOf(list.id);
        if (hasErrors && at < 0) described.push(list.id);
        if (!hasErrors && at >= 0) described.splice(at, 1);
        if (described.length) input.setAttribute("aria-describedby", described.join(" "));
        else input.removeAttribute("aria-describedby");
      });
    });
  }
  document.addEventListener("htmx:afterSettle", function () { markFields(); });
  document.addEventListener("htmx:oobAfterSwap", function () { markFields(); });

  // The lease page: delivered GPU-seconds since the lease started, redrawn every 30 seconds.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(ms) {
    var d = new Date(ms);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
  }

  function startChart(canvas) {
    if (typeof window.Chart === "undefined") return;
    var status = document.getElementById("chart-status");
    var total = document.getElementById("delivered-total");
    var chart = new window.Chart(canvas, {
      type: "line",
      data: { datasets: [{ label: "Delivered GPU-seconds", data: [], borderColor: "#0b5cad",
        backgroundColor: "rgba(11, 92, 173, 0.12)", fill: true, pointRadius: 2, stepped: false }] },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false, parsing: false,
        scales: {
          x: { type: "linear", title: { display: true, text: "UTC" },
               ticks: { maxTicksLimit: 6, callback: function (v) { return clock(v).slice(5); } } },
          y: { beginAtZero: true, title: { display: true, text: "GPU-seconds delivered" } }
        },
        plugins: { tooltip: { callbacks: { title: function (items) { return clock(items[0].parsed.x) + " UTC"; } } } }
      }
    });
    canvas.chart = chart;

    function refresh() {
      fetch(canvas.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (data) {
          chart.data.datasets[0].data = data.points.map(function (p) {
            return { x: Date.parse(p.t), y: p.gpu_seconds };
          });
          chart.options.scales.x.min = Date.parse(data.start);
          chart.options.scales.x.max = Math.max(Date.parse(data.as_of), Date.parse(data.start) + 60000);
          chart.update();
          canvas.dataset.points = String(data.points.length);
          if (total) total.textContent = (data.delivered_gpu_seconds / 3600).toFixed(1);
          if (status) status.textContent = "Updated " + clock(Date.now()) + " UTC: " +
            data.delivered_gpu_seconds + " of " + data.leased_gpu_seconds +
            " GPU-seconds delivered so far. Refreshes every 30 seconds.";
        })
        .catch(function (err) { if (status) status.textContent = "Could not refresh the chart (" + err.message + "); retrying."; });
    }
    refresh();
    window.setInterval(refresh, 30000);
  }

  function ready() {
    markFields();
    var canvas = document.getElementById("delivery-chart");
    if (canvas) startChart(canvas);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
