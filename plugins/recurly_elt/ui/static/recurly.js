// Draws the page's Plotly figures (built on the server, embedded as JSON in #figures) and lists
// the accounts behind a clicked waterfall bar. Text goes into the page with textContent only.
(function () {
  "use strict";
  var base = document.body.dataset.base || "";
  var figures = JSON.parse(document.getElementById("figures").textContent || "{}");
  var config = { displaylogo: false, responsive: true };

  function money(v) {
    return Number(v || 0).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) { td.className = cls; }
    row.appendChild(td);
  }

  function showAccounts(target, site, month, type) {
    target.textContent = "Loading the " + type + " accounts…";
    var url = base + "/api/revenue/movements/accounts?site=" + encodeURIComponent(site) +
      "&month=" + encodeURIComponent(month) + "&movement_type=" + encodeURIComponent(type);
    fetch(url, { credentials: "same-origin" }).then(function (res) {
      if (!res.ok) { throw new Error("HTTP " + res.status); }
      return res.json();
    }).then(function (body) {
      target.textContent = "";
      var title = document.createElement("h3");
      title.id = "drill-title";
      title.textContent = body.count + " account(s) with " + type + " in " + month.slice(0, 7) +
        ", total " + money(body.total) + (body.shown < body.count ? " (the " + body.shown + " largest shown)" : "");
      title.dataset.count = body.count;
      title.dataset.total = body.total;
      target.appendChild(title);
      var table = document.createElement("table");
      table.className = "data";
      table.id = "drill-accounts";
      var head = table.createTHead().insertRow();
      ["account", "company", "opening", "closing", "movement"].forEach(function (h) {
        var th = document.createElement("th"); th.textContent = h; head.appendChild(th);
      });
      var tbody = table.createTBody();
      body.accounts.forEach(function (a) {
        var row = tbody.insertRow();
        var td = document.createElement("td");
        var link = document.createElement("a");
        link.href = base + "/health/account?site=" + encodeURIComponent(site) + "&account=" + encodeURIComponent(a.account_id);
        link.textContent = a.account_code || a.account_id;
        td.appendChild(link); row.appendChild(td);
        cell(row, a.company);
        cell(row, money(a.opening_mrr), "n");
        cell(row, money(a.closing_mrr), "n");
        cell(row, money(a.movement), "n");
      });
      target.appendChild(table);
    }).catch(function (err) {
      target.textContent = "Could not load the accounts: " + err.message;
    });
  }

  document.querySelectorAll(".chart[data-figure]").forEach(function (el) {
    var fig = figures[el.dataset.figure];
    if (!fig) { return; }
    Plotly.newPlot(el, fig.data, fig.layout, config).then(function () {
      el.dataset.drawn = "true";
      el.dataset.traces = String(fig.data.length);
    });
    if (el.dataset.figure === "waterfall") {
      var target = document.getElementById("movement-accounts");
      el.on("plotly_click", function (ev) {
        var type = ev.points && ev.points[0] && ev.points[0].customdata;
        if (type) { showAccounts(target, el.dataset.site, el.dataset.month, type); }
      });
    }
  });

  document.querySelectorAll(".movement-link").forEach(function (a) {
    a.addEventListener("click", function (ev) {
      ev.preventDefault();
      var target = document.getElementById("movement-accounts");
      showAccounts(target, target.dataset.site, target.dataset.month, a.dataset.type);
    });
  });
})();
