// report.html's page: cards of an evaluation's samples, sorted, filtered, rendered in batches as they
// scroll into view (perception_env/evaluation/html_report.py writes the data this reads).
"use strict";
(function () {
  const BATCH = 40; // cards added each time the end of the list comes near the viewport
  const DISPLAY = 448; // px: an image's longer side on screen (at most: a narrow window shrinks it)
  const SVG = "http://www.w3.org/2000/svg";
  const byId = (id) => document.getElementById(id);
  const readJSON = (id) => {
    const node = byId(id);
    return node ? JSON.parse(node.textContent) : null;
  };

  const config = readJSON("report-config");
  const runs = [readJSON("records")];
  const views = [readJSON("views")];
  // record k's image (a data URI) is the text of element image-k, read when its card nears the viewport
  const imageOf = (k) => byId(`image-${k}`);
  if (byId("records-b")) {
    runs.push(readJSON("records-b"));
    views.push(readJSON("views-b"));
  }
  const comparing = runs.length === 2;
  const n = runs[0].length;
  const reward = (k, run) => Number(runs[run][k].reward) || 0;
  const delta = (k) => reward(k, 1) - reward(k, 0);
  const tagsOf = (k) => new Set(views.flatMap((v) => v[k].tags));
  const classesOf = (k) => new Set(views.flatMap((v) => v[k].classes));
  const root = document.documentElement.style;
  root.setProperty("--target", config.colours.target);
  root.setProperty("--matched", config.colours.matched);
  root.setProperty("--unmatched", config.colours.unmatched);

  // ------------------------------------------------------------------ controls
  const sorts = {
    "reward-asc": ["reward, worst first", (a, b) => reward(a, comparing ? 1 : 0) - reward(b, comparing ? 1 : 0)],
    "reward-desc": ["reward, best first", (a, b) => reward(b, comparing ? 1 : 0) - reward(a, comparing ? 1 : 0)],
    index: ["sample index", (a, b) => runs[0][a].index - runs[0][b].index],
  };
  if (comparing) {
    sorts["delta-asc"] = ["change in reward, most lost first", (a, b) => delta(a) - delta(b)];
    sorts["delta-desc"] = ["change in reward, most gained first", (a, b) => delta(b) - delta(a)];
  }
  const sortSelect = byId("sort");
  for (const [value, [label]] of Object.entries(sorts)) sortSelect.add(new Option(label, value));
  sortSelect.value = "reward-asc";

  function fillCounts(select, countsOf) {
    const counts = new Map();
    for (let k = 0; k < n; k++) for (const key of countsOf(k)) counts.set(key, (counts.get(key) || 0) + 1);
    for (const key of [...counts.keys()].sort()) select.add(new Option(`${key} (${counts.get(key)})`, key));
    if (!counts.size) select.closest("label").hidden = true;
  }
  fillCounts(byId("reason"), tagsOf);
  fillCounts(byId("class"), classesOf);

  function shownOrder() {
    const reason = byId("reason").value;
    const cls = byId("class").value;
    const low = parseFloat(byId("reward-min").value);
    const high = parseFloat(byId("reward-max").value);
    const text = byId("search").value.trim().toLowerCase();
    const keep = [];
    for (let k = 0; k < n; k++) {
      if (reason && !tagsOf(k).has(reason)) continue;
      if (cls && !classesOf(k).has(cls)) continue;
      const r = reward(k, comparing ? 1 : 0);
      if (!Number.isNaN(low) && r < low) continue;
      if (!Number.isNaN(high) && r > high) continue;
      if (text) {
        const hay = runs.map((rs) => `${rs[k].sample_id} ${rs[k].prompt} ${rs[k].answer}`).join(" ");
        if (!hay.toLowerCase().includes(text)) continue;
      }
      keep.push(k);
    }
    const compare = sorts[sortSelect.value][1];
    // ties keep index order: a stable sort of samples already in order
    return keep.sort((a, b) => compare(a, b) || a - b);
  }

  // ------------------------------------------------------------------ drawing
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    return node;
  }
  const boxesOf = (x) => (x && Array.isArray(x.boxes) ? x.boxes : []);
  const pointsOf = (x) => (x && Array.isArray(x.points) ? x.points : []);

  // The SVG's viewBox is the ORIGINAL image's pixels, so a box's x/y/width/height are the record's
  // pixels; the browser scales them with the image to its displayed size.
  const sizeOf = (record) => (Array.isArray(record.image_size) ? record.image_size.map(Number) : [448, 448]);
  const finite = (numbers) => numbers.every((v) => v !== null && Number.isFinite(Number(v)));

  function drawing(record, view) {
    const [width, height] = sizeOf(record);
    const unit = Math.max(width, height) / DISPLAY; // one screen pixel in image pixels (see figure())
    const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
    const colours = config.colours;
    const font = 13 * unit;
    // labels: a prediction's inside its box's top, a target's under its box (above it at the image's
    // bottom), so that a wrong class shows beside the right one
    const rect = (b, colour, stroke, cls, label, title, below) => {
      if (!Array.isArray(b) || b.length !== 4 || !finite(b)) return svgEl("g", {}); // drawn as nothing
      const [x1, y1, x2, y2] = b.map(Number);
      const r = svgEl("rect", {
        x: Math.min(x1, x2), y: Math.min(y1, y2), width: Math.abs(x2 - x1), height: Math.abs(y2 - y1),
        fill: "none", stroke: colour, "stroke-width": stroke, "vector-effect": "non-scaling-stroke", class: cls,
      });
      const t = svgEl("title", {});
      t.textContent = title;
      r.appendChild(t);
      svg.appendChild(r);
      if (label) {
        const bottom = Math.max(y1, y2) + font;
        const y = !below ? Math.min(y1, y2) + font : bottom <= height ? bottom : Math.min(y1, y2) - font * 0.25;
        const text = svgEl("text", { x: Math.min(x1, x2) + font * 0.2, y, fill: colour, "font-size": font,
          class: cls + "-label" });
        text.textContent = label;
        svg.appendChild(text);
      }
      return r;
    };
    const target = record.target || {};
    const parsed = record.parsed || {};
    const targetLabels = target.labels || [];
    const predLabels = parsed.labels || [];
    const showLabels = config.draw_labels;
    boxesOf(target).forEach((b, i) =>
      rect(b, colours.target, 4, "target", showLabels ? targetLabels[i] : "", `target ${i}: ${targetLabels[i] || ""}`, true));
    for (const [i, p] of (config.draw_points ? pointsOf(target) : []).entries()) {
      if (!finite(p)) continue;
      const c = svgEl("circle", { cx: p[0], cy: p[1], r: 5 * unit, fill: "none", stroke: colours.target,
        "stroke-width": 2, "vector-effect": "non-scaling-stroke", class: "target-point", "data-target": i });
      svg.appendChild(c);
    }
    const matched = view.matched || [];
    const centre = (b) => [(Number(b[0]) + Number(b[2])) / 2, (Number(b[1]) + Number(b[3])) / 2];
    const predBoxes = boxesOf(parsed);
    const predPoints = config.draw_points ? pointsOf(parsed) : [];
    const usePoints = predPoints.length > 0 && pointsOf(target).length > 0;
    predBoxes.forEach((b, i) => {
      const ok = matched[i] !== null && matched[i] !== undefined;
      const r = rect(b, ok ? colours.matched : colours.unmatched, 2, ok ? "pred matched" : "pred unmatched",
        showLabels ? predLabels[i] : "", `prediction ${i}: ${predLabels[i] || ""} (${ok ? "matched" : "unmatched"})`);
      r.dataset.pred = i;
    });
    predPoints.forEach((p, i) => {
      if (!finite(p)) return;
      const ok = matched[i] !== null && matched[i] !== undefined;
      const r = 6 * unit;
      const [x, y] = p.map(Number);
      svg.appendChild(svgEl("path", {
        d: `M${x - r},${y - r}L${x + r},${y + r}M${x - r},${y + r}L${x + r},${y - r}`,
        stroke: ok ? colours.matched : colours.unmatched, "stroke-width": 2, "vector-effect": "non-scaling-stroke",
        class: ok ? "pred-point matched" : "pred-point unmatched", "data-pred": i,
      }));
    });
    matched.forEach((t, i) => { // a line from each matched prediction to its target, as render.py draws
      if (t === null || t === undefined) return;
      let a, b;
      if (usePoints && i < predPoints.length && t < pointsOf(target).length) [a, b] = [predPoints[i], pointsOf(target)[t]];
      else if (i < predBoxes.length && t < boxesOf(target).length) [a, b] = [centre(predBoxes[i]), centre(boxesOf(target)[t])];
      else return;
      if (!finite([...a, ...b])) return;
      svg.appendChild(svgEl("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], stroke: colours.matched,
        "stroke-width": 1, "vector-effect": "non-scaling-stroke", class: "link" }));
    });
    return svg;
  }

  const imageObserver = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const img = entry.target;
      img.src = imageOf(img.dataset.k).textContent;
      imageObserver.unobserve(img);
    }
  }, { rootMargin: "800px 0px" });

  function figure(record, view, k) {
    const [width, height] = sizeOf(record);
    const fig = el("figure", { class: "view" });
    fig.style.aspectRatio = `${width} / ${height}`;
    fig.style.width = `${(DISPLAY * width) / Math.max(width, height)}px`; // a portrait photo 448 px tall
    if (imageOf(k)) {
      const img = el("img", { alt: `sample ${record.sample_id}`, decoding: "async", loading: "lazy" });
      img.dataset.k = k;
      img.width = width;
      img.height = height;
      fig.appendChild(img);
      imageObserver.observe(img); // its pixels only when the card comes near the viewport
    }
    fig.appendChild(drawing(record, view));
    return fig;
  }

  const fmt = (x) => (typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(3)) : String(x));

  function textColumn(record) {
    const box = el("div", { class: "text" });
    box.appendChild(el("div", { class: "label" }, "answer"));
    box.appendChild(el("pre", { class: "answer" }, record.answer));
    const problems = (record.parsed && record.parsed.problems) || [];
    if (problems.length) {
      box.appendChild(el("div", { class: "label" }, "parse problems"));
      const list = el("ul", { class: "problems" });
      for (const p of problems) list.appendChild(el("li", {}, p));
      box.appendChild(list);
    }
    if (record.reason) box.appendChild(el("p", { class: "reason" }, `why: ${record.reason}`));
    const truth = record.target && record.target.text;
    if (truth) {
      box.appendChild(el("div", { class: "label" }, "truth"));
      box.appendChild(el("pre", { class: "truth" }, truth));
    }
    const table = el("table", { class: "components" });
    for (const [key, value] of Object.entries(record.reward_components || {})) {
      const row = el("tr");
      row.appendChild(el("td", {}, key));
      row.appendChild(el("td", {}, fmt(value)));
      table.appendChild(row);
    }
    box.appendChild(table);
    return box;
  }

  function card(k) {
    const first = runs[0][k];
    const node = el("article", { class: "card", id: `card-${k}`, tabindex: "-1" });
    node.dataset.k = k;
    node.dataset.index = first.index;
    const head = el("header");
    head.appendChild(el("span", { class: "id" }, `#${first.index} ${first.sample_id || ""}`));
    runs.forEach((rs, run) => {
      const label = comparing ? `${config.labels[run]}: ` : "";
      head.appendChild(el("span", { class: "reward" }, `${label}reward ${fmt(reward(k, run))}`));
    });
    if (comparing) {
      const d = delta(k);
      head.appendChild(el("span", { class: `delta ${d > 0 ? "up" : d < 0 ? "down" : ""}` },
        `change ${d > 0 ? "+" : ""}${fmt(d)}`));
    }
    const tags = (parent, run) => {
      for (const tag of views[run][k].tags) parent.appendChild(el("span", { class: `tag ${tag === "passed" ? "passed" : ""}` }, tag));
    };
    if (!comparing) tags(head, 0);
    node.appendChild(head);
    node.appendChild(el("p", { class: "prompt" }, first.prompt));
    const panes = el("div", { class: "panes" });
    runs.forEach((rs, run) => {
      const pane = el("section", { class: "pane" });
      if (comparing) {
        const title = el("h3", {}, `${config.labels[run]} `);
        tags(title, run);
        pane.appendChild(title);
      }
      pane.appendChild(figure(rs[k], views[run][k], k));
      pane.appendChild(textColumn(rs[k]));
      panes.appendChild(pane);
    });
    node.appendChild(panes);
    return node;
  }

  // ------------------------------------------------------------------ the list
  const cards = byId("cards");
  const state = { order: [], rendered: 0, current: -1 };
  window.report = state; // for a reader's console and the browser test

  function renderMore() {
    const end = Math.min(state.order.length, state.rendered + BATCH);
    const chunk = document.createDocumentFragment();
    for (let p = state.rendered; p < end; p++) chunk.appendChild(card(state.order[p]));
    cards.appendChild(chunk);
    state.rendered = end;
    if (end > 0 && !performance.getEntriesByName("first-card").length) performance.mark("first-card");
  }

  function update() {
    state.order = shownOrder();
    state.rendered = 0;
    state.current = -1;
    cards.replaceChildren();
    renderMore();
    byId("status").textContent = `showing ${state.order.length} of ${n} samples`;
  }

  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.rendered < state.order.length) {
      renderMore();
    }
  }, { rootMargin: "1200px 0px" }).observe(byId("sentinel"));
  // the observer fires once per crossing: keep adding while the end stays in view (a tall window)
  document.addEventListener("scroll", () => {
    const end = byId("sentinel").getBoundingClientRect().top;
    if (end < window.innerHeight + 1200 && state.rendered < state.order.length) renderMore();
  }, { passive: true });

  for (const id of ["sort", "reason", "class"]) byId(id).addEventListener("change", update);
  for (const id of ["reward-min", "reward-max", "search"]) byId(id).addEventListener("input", update);

  function go(step) {
    const next = Math.max(0, Math.min(state.order.length - 1, state.current + step));
    while (next >= state.rendered && state.rendered < state.order.length) renderMore();
    const old = cards.children[state.current];
    if (old) old.classList.remove("current");
    state.current = next;
    const node = cards.children[next];
    if (!node) return;
    node.classList.add("current");
    node.focus({ preventScroll: true });
    node.scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", (event) => {
    const where = event.target.tagName;
    if (where === "INPUT" || where === "SELECT") {
      if (event.key === "Escape") event.target.blur(); // back to the cards' keys
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "j" || event.key === "ArrowDown") go(1);
    else if (event.key === "k" || event.key === "ArrowUp") go(-1);
    else return;
    event.preventDefault();
  });

  update();
})();
