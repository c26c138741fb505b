/* The market page: countdown to the cutoff, the charts, and the team page's copy button.
   Everything here enhances server-rendered HTML: without JavaScript the page still shows the UTC
   cutoff, the tables, and a filter form that reloads the page. */
(function () {
  "use strict";

  var COLOURS = ["#0b5cad", "#b3261e", "#146c2e", "#7a4b00", "#6a1b9a", "#00695c", "#ad1457", "#37474f"];

  function dollars(cents) {
    return "$" + (cents / 100).toFixed(2);
  }

  function utc(ms, withTime) {
    var iso = new Date(ms).toISOString();
    return withTime ? iso.slice(5, 16).replace("T", " ") : iso.slice(0, 10);
  }

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  /* --- countdown --------------------------------------------------------------------------- */

  function countdown(node) {
    var cutoff = Date.parse(node.getAttribute("data-countdown"));
    if (isNaN(cutoff)) return;
    function tick() {
      var left = Math.round((cutoff - Date.now()) / 1000);
      if (left <= 0) {
        node.textContent = " — closed; the next round opens now (reload for it)";
        return;
      }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      node.textContent = " — in " + (h ? h + " h " : "") + (h || m ? m + " min " : "") + s + " s";
      window.setTimeout(tick, 1000 - (Date.now() % 1000));
    }
    tick();
  }

  /* --- charts ------------------------------------------------------------------------------ */

  function nowLine(ms) {
    return {
      id: "nowLine",
      afterDatasetsDraw: function (chart) {
        var x = chart.scales.x.getPixelForValue(ms), area = chart.chartArea;
        if (x < area.left || x > area.right) return;
        var ctx = chart.ctx;
        ctx.save();
        ctx.setLineDash([4, 4]);
        ctx.strokeStyle = "#4a5560";
        ctx.beginPath();
        ctx.moveTo(x, area.top);
        ctx.lineTo(x, area.bottom);
        ctx.stroke();
        ctx.restore();
      },
    };
  }

  function priceDatasets(data) {
    return data.series.map(function (s, i) {
      return {
        label: s.label,
        data: s.points.map(function (p) { return { x: p[0], y: p[1] }; }),
        borderColor: COLOURS[i % COLOURS.length],
        backgroundColor: COLOURS[i % COLOURS.length],
        pointRadius: s.points.length > 60 ? 0 : 2,
        borderWidth: 2,
        tension: 0,
      };
    });
  }

  var priceChart = null;

  function drawPrices(data) {
    var box = document.getElementById("price-chart-box");
    var empty = document.getElementById("price-chart-empty");
    var canvas = document.getElementById("price-chart");
    if (!canvas || !window.Chart) return;
    var hasData = data.series.length > 0;
    box.hidden = !hasData;
    empty.hidden = hasData;
    if (priceChart) priceChart.destroy();
    priceChart = null;
    if (!hasData) return;
    var daily = data.range === "30d";
    priceChart = new window.Chart(canvas, {
      type: "line",
      data: { datasets: priceDatasets(data) },
      plugins: [nowLine(data.now)],
      options: {
        maintainAspectRatio: false,
        animation: false,
        parsing: false,
        interaction: { mode: "nearest", intersect: false },
        scales: {
          x: { type: "linear", ticks: { maxTicksLimit: 8, callback: function (v) { return utc(v, !daily); } } },
          y: { beginAtZero: false, title: { display: true, text: "$ per GPU-hour" },
               ticks: { callback: function (v) { return dollars(v); } } },
        },
        plugins: {
          legend: { position: "bottom" },
          tooltip: { callbacks: {
            title: function (items) { return items.length ? utc(items[0].parsed.x, true) + " UTC" : ""; },
            label: function (item) { return item.dataset.label + ": " + dollars(item.parsed.y); },
          } },
        },
      },
    });
  }

  function barChart(canvas, labels, datasets, yTitle, stacked) {
    return new window.Chart(canvas, {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: { stacked: stacked },
          y: { stacked: stacked, beginAtZero: true, title: { display: true, text: yTitle } },
        },
        plugins: { legend: { display: datasets.length > 1, position: "bottom" } },
      },
    });
  }

  function drawHours() {
    var canvas = document.getElementById("hours-chart");
    var rows = readJson("hours-chart-data");
    if (!canvas || !rows) return;
    barChart(
      canvas,
      rows.map(function (r) { return "Round " + r.round; }),
      [{ label: "GPU-hours traded", data: rows.map(function (r) { return r.gpu_hours; }), backgroundColor: COLOURS[0] }],
      "GPU-hours",
      false
    );
  }

  function drawSupply() {
    var canvas = document.getElementById("supply-chart");
    var supply = readJson("supply-chart-data");
    if (!canvas || !supply) return;
    barChart(
      canvas,
      supply.days,
      supply.series.map(function (s, i) {
        return { label: s.gpu_model, data: s.gpu_hours, backgroundColor: COLOURS[i % COLOURS.length] };
      }),
      "GPU-hours on offer",
      true
    );
  }

  function wireFilters() {
    var form = document.querySelector("form.chart-filters");
    if (!form) return;
    form.querySelectorAll(".js-hide").forEach(function (n) { n.hidden = true; });
    form.addEventListener("change", function () {
      var query = new URLSearchParams(new FormData(form)).toString();
      form.setAttribute("aria-busy", "true");
      fetch(form.getAttribute("data-prices-src") + "?" + query, { headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (data) {
          drawPrices(data);
          // Keep the address shareable: the same filters after a reload.
          window.history.replaceState(null, "", "?" + query + "#price-history");
        })
        .catch(function () { form.submit(); })
        .finally(function () { form.removeAttribute("aria-busy"); });
    });
  }

  /* --- copy buttons (team page) ------------------------------------------------------------ */

  function wireCopy(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.value).then(function () { button.textContent = "Copied"; });
    });
  }

  function start() {
    document.querySelectorAll("[data-countdown]").forEach(countdown);
    document.querySelectorAll("button.copy[data-copy]").forEach(wireCopy);
    if (window.Chart) {
      var prices = readJson("price-chart-data");
      if (prices) drawPrices(prices);
      drawHours();
      drawSupply();
    }
    wireFilters();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
