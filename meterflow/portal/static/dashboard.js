// The dashboard: each page reads the participant's API (same origin, the session cookie) and
// draws with Plotly (served by the portal itself). `body[data-ready]` turns "1" when a page has
// drawn everything, or "error" with the reason in #status.
const Meterflow = (() => {
  const base = (p) => `/api/v1/participants/${encodeURIComponent(p)}`;
  const MONTHS = { xaxis: { tickformat: "%b %Y", dtick: "M1" } };

  async function api(path) {
    const answer = await fetch(path, { credentials: "same-origin" });
    if (!answer.ok) {
      const body = await answer.json().catch(() => ({}));
      throw new Error(typeof body.detail === "string" ? body.detail : answer.statusText);
    }
    return answer.json();
  }

  function num(value, digits) {
    if (value === null || value === undefined) return "–";
    return Number(value).toFixed(digits);
  }

  function row(tbody, values) {
    const tr = document.createElement("tr");
    for (const value of values) {
      const td = document.createElement("td");
      if (value instanceof Node) td.appendChild(value);
      else td.textContent = value;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
    return tr;
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function plot(id, traces, title, extra = {}) {
    const layout = {
      title: { text: title, font: { size: 14 } },
      margin: { t: 40, r: 10, l: 55, b: 40 },
      hovermode: "x unified",
      legend: { orientation: "h" },
      ...extra,
    };
    return Plotly.newPlot(id, traces, layout, { responsive: true, displaylogo: false });
  }

  function series(rows, name, extra = {}) {
    return { type: "scatter", mode: "lines", name, x: rows.map((r) => r.period), y: rows.map((r) => r.value), ...extra };
  }

  function ready(text) {
    document.getElementById("status").textContent = text;
    document.body.dataset.ready = "1";
  }

  function failed(error) {
    const status = document.getElementById("status");
    status.textContent = `Could not load: ${error.message}`;
    status.className = "bad";
    document.body.dataset.ready = "error";
  }

  async function summary(p) {
    const s = await api(`${base(p)}/summary`);
    document.getElementById("span").textContent = `${s.start.slice(0, 10)} to ${s.end.slice(0, 10)} (UTC)`;
    return s;
  }

  async function portfolio(p) {
    try {
      const s = await summary(p);
      const tbody = document.querySelector("#properties tbody");
      for (const r of s.properties) {
        const tr = row(tbody, [
          link(`/p/${p}/property/${r.property}`, r.property),
          num(r.energy_kwh, 1), num(r.kwh_per_m2, 2), num(r.solar_kwh, 1), num(r.outside_c, 1),
          `${num(r.coverage * 100, 1)} %`,
        ]);
        tr.dataset.property = r.property;
      }
      await plot("eui-chart", [{ type: "bar", x: s.properties.map((r) => r.property), y: s.properties.map((r) => r.kwh_per_m2) }],
        "kWh per m² over the span");
      const carbon = await api(`${base(p)}/carbon`);
      const ids = [...new Set(carbon.map((r) => r.property_id))];
      await plot("carbon-chart", ids.map((id) => {
        const mine = carbon.filter((r) => r.property_id === id);
        return { type: "bar", name: id, x: mine.map((r) => r.month), y: mine.map((r) => r.t_co2e) };
      }), "t CO₂-e per local month (scope 2)", { barmode: "stack", ...MONTHS });
      ready(`${s.properties.length} properties`);
    } catch (error) {
      failed(error);
    }
  }

  async function property(p, id) {
    try {
      const s = await summary(p);
      const mine = s.properties.find((r) => r.property === id);
      if (!mine) throw new Error(`no data for property ${id} in the span`);
      const figures = document.querySelector("#figures tbody");
      for (const [label, key, value] of [
        ["energy kWh", "energy_kwh", num(mine.energy_kwh, 1)],
        ["kWh per m²", "kwh_per_m2", num(mine.kwh_per_m2, 2)],
        ["solar kWh", "solar_kwh", num(mine.solar_kwh, 1)],
        ["outside °C (mean)", "outside_c", num(mine.outside_c, 1)],
        ["energy coverage", "coverage", `${num(mine.coverage * 100, 1)} %`],
      ]) row(figures, [label, value]).dataset.figure = key;
      const hourly = (type) => api(`${base(p)}/metrics?data_type=${type}&property_id=${encodeURIComponent(id)}`
        + `&granularity=hour&start=${encodeURIComponent(s.start)}&end=${encodeURIComponent(s.end)}`).catch(() => []);
      const [energy, solar, inside, outside, occupancy] = await Promise.all(
        ["energy", "solar", "temperature", "outdoor_temperature", "occupancy"].map(hourly));
      await plot("energy-chart", [series(energy, "energy kWh"), series(solar, "solar kWh")], "Energy against solar, kWh per hour");
      await plot("temperature-chart", [series(inside, "inside °C"), series(outside, "outside °C")], "Inside against outside temperature");
      await plot("occupancy-chart", [series(occupancy, "people")], "Occupancy");
      const office = (await api(`${base(p)}/office-hours`)).filter((r) => r.property_id === id);
      await plot("office-chart", [["office_kwh", "office hours"], ["out_of_hours_kwh", "out of hours"], ["holiday_kwh", "holidays"]]
        .map(([key, name]) => ({ type: "bar", name, x: office.map((r) => r.month), y: office.map((r) => r[key]) })),
        "Office hours against out of hours, kWh", { barmode: "stack", ...MONTHS });
      const carbon = (await api(`${base(p)}/carbon`)).filter((r) => r.property_id === id);
      await plot("carbon-chart", [{ type: "bar", x: carbon.map((r) => r.month), y: carbon.map((r) => r.t_co2e) }], "t CO₂-e per local month", MONTHS);
      await plot("eui-chart", [{
        type: "bar", x: s.properties.map((r) => r.property), y: s.properties.map((r) => r.kwh_per_m2),
        marker: { color: s.properties.map((r) => (r.property === id ? "#e07a5f" : "#1f6f8b")) },
      }], "kWh per m² against the other properties");
      ready(`${energy.length} hours of energy`);
    } catch (error) {
      failed(error);
    }
  }

  async function meters(p) {
    try {
      const q = await api(`${base(p)}/quality`);
      const tbody = document.querySelector("#meters tbody");
      for (const m of q.meters) {
        row(tbody, [m.meter_id, m.data_type, m.first_hour, m.last_hour, m.hours, m.hours_missing, m.hours_estimated,
          `${num(m.coverage * 100, 1)} %`]).dataset.meter = m.meter_id;
      }
      const gaps = document.querySelector("#gaps tbody");
      for (const g of q.gaps) row(gaps, [g.meter_id, g.gap_start, g.gap_end, g.hours]);
      const refused = document.querySelector("#quarantined tbody");
      for (const f of q.quarantined) row(refused, [f.name, f.source, f.reason]);
      ready(`${q.meters.length} meters, ${q.gaps.length} gaps, ${q.quarantined.length} quarantined files`);
    } catch (error) {
      failed(error);
    }
  }

  async function mrv(p) {
    try {
      const records = await api(`${base(p)}/mrv-records`);
      const tbody = document.querySelector("#records tbody");
      for (const r of records) {
        row(tbody, [r.meter_id, r.period_start_utc, num(r.energy_kwh, 1), num(r.carbon_t, 3),
          `${num(r.coverage * 100, 1)} %`, r.status, r.reasons || "", r.document_id || ""]).dataset.record = r.record_id;
      }
      ready(`${records.length} records`);
    } catch (error) {
      failed(error);
    }
  }

  return { portfolio, property, meters, mrv };
})();
