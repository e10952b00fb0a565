// The gallery of one run: filters, sort, a virtualised grid, an X/Y view, a detail view and
// selections. Reads window.GALLERY (data.js) and, on demand, detail/NNNNN.js.
(function () {
  "use strict";
  var G = window.GALLERY, N = G.n, CELL = 160;
  var served = location.protocol.indexOf("http") === 0;
  var base = served ? "/run/" : G.images;
  var storeKey = "animagine-batch-gallery:" + G.run;
  var $ = function (id) { return document.getElementById(id); };
  var grid = $("grid"), spacer = $("spacer");

  var codes = {}, allowed = {}, values = {};
  Object.keys(G.factors).forEach(function (f) {
    codes[f] = Int32Array.from(G.factors[f].codes);
    allowed[f] = new Uint8Array(G.factors[f].levels.length).fill(1);
  });
  Object.keys(G.scores).forEach(function (s) {
    values[s] = Float64Array.from(G.scores[s].values, function (v) { return v === null ? NaN : v; });
  });
  function tagIndex(t) {
    var index = new Map();
    t.vocab.forEach(function (name, i) { index.set(name, i); });
    return {index: index, offsets: Int32Array.from(t.offsets), codes: Int32Array.from(t.codes)};
  }
  var tags = {prompt: tagIndex(G.prompt_tags), found: tagIndex(G.found_tags)};
  var marks = {};
  try { marks = JSON.parse(localStorage.getItem(storeKey) || "{}"); } catch (e) { marks = {}; }
  var shown = new Int32Array(N), count = 0, focus = 0, ranges = {};

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ---- filter controls ----
  function buildFilters() {
    var box = $("factor-filters");
    Object.keys(G.factors).forEach(function (f) {
      var levels = G.factors[f].levels;
      if (levels.length < 2) return;
      var set = el("fieldset", {"data-factor": f});
      set.appendChild(el("legend", {}, f));
      if (levels.length <= 40) {
        levels.forEach(function (name, code) {
          var label = el("label");
          var box = el("input", {type: "checkbox", value: String(code)});
          box.checked = true;
          box.addEventListener("change", function () { allowed[f][code] = box.checked ? 1 : 0; apply(); });
          label.appendChild(box);
          label.appendChild(document.createTextNode(" " + name));
          set.appendChild(label);
        });
      } else {
        var search = el("input", {type: "search", "class": "level-search", placeholder: levels.length + " levels: type to match"});
        search.addEventListener("input", function () {
          var q = search.value.trim().toLowerCase();
          levels.forEach(function (name, code) { allowed[f][code] = !q || name.toLowerCase().indexOf(q) >= 0 ? 1 : 0; });
          apply();
        });
        set.appendChild(search);
      }
      box.appendChild(set);
    });
    var scores = $("score-filters");
    Object.keys(G.scores).forEach(function (s) {
      var row = el("div", {"class": "row score-range", "data-score": s});
      row.appendChild(el("span", {}, s));
      ["min", "max"].forEach(function (side) {
        var input = el("input", {type: "number", step: "any", placeholder: side, "data-bound": side});
        input.addEventListener("input", function () {
          ranges[s] = ranges[s] || {};
          ranges[s][side] = input.value === "" ? null : parseFloat(input.value);
          apply();
        });
        row.appendChild(input);
      });
      scores.appendChild(row);
      $("sort").appendChild(el("option", {value: s}, s));
    });
    var list = $("tag-list"), seen = new Set();
    G.prompt_tags.vocab.concat(G.found_tags.vocab).slice(0, 3000).forEach(function (t) {
      if (!seen.has(t)) { seen.add(t); list.appendChild(el("option", {value: t})); }
    });
    ["sort", "order", "tag-source", "mark-filter"].forEach(function (id) { $(id).addEventListener("change", apply); });
    $("tag").addEventListener("input", apply);
    $("reset").addEventListener("click", function () {
      Object.keys(allowed).forEach(function (f) { allowed[f].fill(1); });
      Array.prototype.forEach.call(document.querySelectorAll("#side input"), function (i) {
        if (i.type === "checkbox") i.checked = true; else i.value = "";
      });
      ranges = {};
      $("mark-filter").value = "all";
      apply();
    });
  }

  function hasTag(source, code, row) {
    var t = tags[source];
    for (var k = t.offsets[row]; k < t.offsets[row + 1]; k++) if (t.codes[k] === code) return true;
    return false;
  }

  // ---- filter and sort ----
  function apply() {
    var t0 = performance.now();
    var active = Object.keys(allowed).filter(function (f) { return allowed[f].indexOf(0) >= 0; });
    var bounds = Object.keys(ranges).filter(function (s) { return ranges[s].min != null || ranges[s].max != null; });
    var tag = $("tag").value.trim(), source = $("tag-source").value, mark = $("mark-filter").value;
    var tagCodes = {prompt: tags.prompt.index.get(tag), found: tags.found.index.get(tag)};
    count = 0;
    for (var i = 0; i < N; i++) {
      var keep = true, f, k;
      for (k = 0; k < active.length && keep; k++) { f = active[k]; keep = allowed[f][codes[f][i]] === 1; }
      for (k = 0; k < bounds.length && keep; k++) {
        var v = values[bounds[k]][i], r = ranges[bounds[k]];
        keep = v === v && (r.min == null || v >= r.min) && (r.max == null || v <= r.max);
      }
      if (keep && tag) {
        keep = (source !== "found" && tagCodes.prompt !== undefined && hasTag("prompt", tagCodes.prompt, i)) ||
               (source !== "prompt" && tagCodes.found !== undefined && hasTag("found", tagCodes.found, i));
      }
      if (keep && mark !== "all") {
        var m = marks[G.ids[i]];
        keep = mark === "none" ? !m : mark === "picked" ? (m === "keep" || m === "starred") : m === mark;
      }
      if (keep) shown[count++] = i;
    }
    var sortBy = $("sort").value;
    if (sortBy) {
      var vals = values[sortBy], sign = $("order").value === "asc" ? 1 : -1;
      var order = Array.from(shown.subarray(0, count));
      order.sort(function (a, b) {
        var x = vals[a], y = vals[b];
        if (x !== x) return y !== y ? a - b : 1;  // missing scores last
        if (y !== y) return -1;
        return x === y ? a - b : sign * (x - y);
      });
      shown.set(order);
    }
    focus = Math.min(focus, Math.max(0, count - 1));
    $("count").textContent = count.toLocaleString() + " of " + N.toLocaleString() + " images";
    document.body.dataset.shown = count;
    document.body.dataset.filterMs = (performance.now() - t0).toFixed(1);
    render();
  }

  // ---- grid (only the rows in view are in the DOM) ----
  function columns() { return Math.max(1, Math.floor(grid.clientWidth / CELL)); }

  function caption(row) {
    var s = $("sort").value;
    if (s) { var v = values[s][row]; return s + " " + (v === v ? v : "-"); }
    var f = G.axes.map(function (a) { return G.factors[a].levels[codes[a][row]]; });
    return f.join(" · ");
  }

  function cell(pos) {
    var row = shown[pos], id = G.ids[row], cols = columns();
    var div = el("div", {"class": "cell", "data-id": id, "data-pos": String(pos)});
    div.style.left = (pos % cols) * CELL + "px";
    div.style.top = Math.floor(pos / cols) * CELL + "px";
    if (G.thumb[row]) {
      div.appendChild(el("img", {src: "thumbs/" + G.thumb[row], loading: "lazy", alt: id}));
    } else {
      var st = G.factors.status ? G.factors.status.levels[codes.status[row]] : "no image";
      div.appendChild(el("span", {"class": "missing"}, st));
    }
    div.appendChild(el("span", {"class": "caption"}, caption(row)));
    var m = marks[id];
    if (m) { div.classList.add(m); div.appendChild(el("span", {"class": "badge"}, m)); }
    if (pos === focus) div.classList.add("focused");
    return div;
  }

  function render() {
    if (!$("xy").hidden) { renderXY(); return; }
    var cols = columns(), rows = Math.ceil(count / cols);
    spacer.style.height = rows * CELL + "px";
    var first = Math.max(0, Math.floor(grid.scrollTop / CELL) - 2);
    var last = Math.min(rows, Math.ceil((grid.scrollTop + grid.clientHeight) / CELL) + 2);
    var frag = document.createDocumentFragment();
    for (var pos = first * cols; pos < Math.min(count, last * cols); pos++) frag.appendChild(cell(pos));
    spacer.replaceChildren(frag);
  }

  var pending = false;
  grid.addEventListener("scroll", function () {
    if (!pending) { pending = true; requestAnimationFrame(function () { pending = false; render(); }); }
  });
  window.addEventListener("resize", render);
  grid.addEventListener("click", function (e) {
    var c = e.target.closest(".cell");
    if (c) { setFocus(+c.dataset.pos); grid.focus(); }
  });
  grid.addEventListener("dblclick", function (e) {
    var c = e.target.closest(".cell");
    if (c) openDetail(+c.dataset.pos);
  });

  function setFocus(pos) {
    if (!count) return;
    focus = Math.max(0, Math.min(count - 1, pos));
    var top = Math.floor(focus / columns()) * CELL;
    if (top < grid.scrollTop) grid.scrollTop = top;
    else if (top + CELL > grid.scrollTop + grid.clientHeight) grid.scrollTop = top + CELL - grid.clientHeight;
    render();
  }

  // ---- selections ----
  function selection() {
    var out = {format: "animagine-batch-selection", version: 1, run: G.run,
               saved: new Date().toISOString(), keep: [], reject: [], starred: []};
    Object.keys(marks).sort().forEach(function (id) { out[marks[id]].push(id); });
    return out;
  }

  var saveTimer = null;
  function persist() {
    localStorage.setItem(storeKey, JSON.stringify(marks));
    var s = selection();
    $("selection-count").textContent = s.keep.length + " keep, " + s.starred.length + " starred, " + s.reject.length + " reject";
    document.body.dataset.marked = Object.keys(marks).length;
    if (!served) return;
    clearTimeout(saveTimer);
    saveTimer = setTimeout(function () {
      fetch("/api/selection", {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify(selection())}).then(function (r) { return r.json(); })
        .then(function (b) { $("saved").textContent = b.saved ? "saved to " + b.path : "not saved: " + b.error; })
        .catch(function (e) { $("saved").textContent = "not saved: " + e.message; });
    }, 200);
  }

  function setMark(row, m) {
    var id = G.ids[row];
    if (m === null || marks[id] === m) delete marks[id]; else marks[id] = m;
    persist();
    render();
    if (!$("detail").hidden) showMarks(row);
  }

  $("download").addEventListener("click", function () {
    var blob = new Blob([JSON.stringify(selection(), null, 1) + "\n"], {type: "application/json"});
    var a = el("a", {href: URL.createObjectURL(blob), download: "selection.json"});
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  });

  // ---- detail view ----
  var chunks = {}, waiting = {};
  window.galleryDetail = function (chunk, rows) {
    chunks[chunk] = rows;
    (waiting[chunk] || []).forEach(function (f) { f(rows); });
    delete waiting[chunk];
  };
  function detailOf(row, done) {
    var chunk = Math.floor(row / G.detail_rows), pad = ("0000" + chunk).slice(-5);
    if (chunks[chunk]) { done(chunks[chunk][row % G.detail_rows]); return; }
    (waiting[chunk] = waiting[chunk] || []).push(function (rows) { done(rows[row % G.detail_rows]); });
    if (waiting[chunk].length === 1) document.body.appendChild(el("script", {src: "detail/" + pad + ".js"}));
  }

  function table(id, pairs) {
    var t = $(id);
    t.replaceChildren();
    pairs.forEach(function (p) {
      var tr = el("tr");
      tr.appendChild(el("td", {}, p[0]));
      tr.appendChild(el("td", {}, p[1]));
      t.appendChild(tr);
    });
  }

  function showMarks(row) {
    Array.prototype.forEach.call(document.querySelectorAll("#detail [data-mark]"), function (b) {
      b.classList.toggle("on", marks[G.ids[row]] === b.dataset.mark);
    });
  }

  function listTags(source, row) {
    var t = tags[source], names = source === "prompt" ? G.prompt_tags.vocab : G.found_tags.vocab, out = [];
    for (var k = t.offsets[row]; k < t.offsets[row + 1]; k++) out.push(names[t.codes[k]]);
    return out;
  }

  function openDetail(pos) {
    if (!count) return;
    focus = Math.max(0, Math.min(count - 1, pos));
    var row = shown[focus];
    $("detail").hidden = false;
    $("detail").dataset.id = G.ids[row];
    table("detail-settings", [["task_id", G.ids[row]]].concat(Object.keys(G.factors).map(function (f) {
      return [f, G.factors[f].levels[codes[f][row]]];
    })));
    table("detail-scores", Object.keys(G.scores).map(function (s) {
      var v = values[s][row];
      return [s, v === v ? String(v) : "-"];
    }));
    $("detail-tags").textContent = "prompt: " + listTags("prompt", row).join(", ") +
      (G.found_tags.vocab.length ? " | tagger: " + listTags("found", row).join(", ") : "");
    showMarks(row);
    $("copy-status").textContent = "";
    detailOf(row, function (d) {
      if (shown[focus] !== row) return;
      $("detail-prompt").textContent = d.prompt || "";
      $("detail-negative").textContent = d.negative_prompt || "";
      $("infotext").value = d.infotext || "";
      $("detail-image").src = d.image_path ? base + d.image_path : "";
      document.body.dataset.detail = G.ids[row];
    });
    render();
  }

  function closeDetail() { $("detail").hidden = true; grid.focus(); }
  $("detail-close").addEventListener("click", closeDetail);
  $("detail-prev").addEventListener("click", function () { openDetail(focus - 1); });
  $("detail-next").addEventListener("click", function () { openDetail(focus + 1); });
  Array.prototype.forEach.call(document.querySelectorAll("#detail [data-mark]"), function (b) {
    b.addEventListener("click", function () { setMark(shown[focus], b.dataset.mark); });
  });
  $("copy-infotext").addEventListener("click", function () {
    var text = $("infotext").value;
    function done(ok) {
      $("copy-status").textContent = ok ? "copied" : "select the text and copy it";
      document.body.dataset.copied = ok ? text.length : "failed";
    }
    function fallback() {
      $("infotext").select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      done(ok);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
    } else fallback();
  });

  document.addEventListener("keydown", function (e) {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT" || e.target.tagName === "TEXTAREA") return;
    var inDetail = !$("detail").hidden, cols = columns(), key = e.key;
    var markKeys = {k: "keep", x: "reject", s: "starred", u: null};
    if (key in markKeys && count) { setMark(shown[focus], markKeys[key]); e.preventDefault(); return; }
    if (inDetail) {
      if (key === "Escape") closeDetail();
      else if (key === "ArrowLeft") openDetail(focus - 1);
      else if (key === "ArrowRight") openDetail(focus + 1);
      else return;
    } else {
      if (key === "ArrowRight") setFocus(focus + 1);
      else if (key === "ArrowLeft") setFocus(focus - 1);
      else if (key === "ArrowDown") setFocus(focus + cols);
      else if (key === "ArrowUp") setFocus(focus - cols);
      else if (key === "Enter") openDetail(focus);
      else return;
    }
    e.preventDefault();
  });

  // ---- X/Y view: levels of two factors, every other factor held at one level ----
  var design = Object.keys(G.factors).filter(function (f) { return G.factors[f].design && G.factors[f].levels.length > 1; });
  function buildXY() {
    var x = $("xy-x"), y = $("xy-y");
    design.forEach(function (f) { x.appendChild(el("option", {value: f}, f)); y.appendChild(el("option", {value: f}, f)); });
    x.value = G.axes.filter(function (a) { return design.indexOf(a) >= 0; })[0] || design[0] || "";
    y.value = design.indexOf("seed") >= 0 && x.value !== "seed" ? "seed" : (design.filter(function (f) { return f !== x.value; })[0] || "");
    [x, y].forEach(function (s) { s.addEventListener("change", function () { buildHeld(); renderXY(); }); });
    buildHeld();
  }
  function buildHeld() {
    var box = $("xy-held");
    box.replaceChildren();
    design.forEach(function (f) {
      if (f === $("xy-x").value || f === $("xy-y").value) return;
      var s = el("select", {"data-hold": f});
      G.factors[f].levels.forEach(function (name, code) { s.appendChild(el("option", {value: String(code)}, name)); });
      s.addEventListener("change", renderXY);
      var label = el("label", {}, f + " ");
      label.appendChild(s);
      box.appendChild(label);
    });
  }
  function renderXY() {
    var fx = $("xy-x").value, fy = $("xy-y").value, box = $("xy");
    var held = Array.prototype.map.call(document.querySelectorAll("#xy-held select"), function (s) {
      var f = s.dataset.hold, present = new Set();
      for (var p = 0; p < count; p++) present.add(codes[f][shown[p]]);
      if (!present.has(+s.value) && present.size) s.value = String(Math.min.apply(null, Array.from(present)));
      return [f, +s.value];  // held at a level that the filters let through
    });
    var cells = new Map(), xs = new Set(), ys = new Set();
    for (var pos = 0; pos < count; pos++) {
      var row = shown[pos];
      if (!held.every(function (h) { return codes[h[0]][row] === h[1]; })) continue;
      var key = codes[fx][row] + "," + codes[fy][row];
      xs.add(codes[fx][row]); ys.add(codes[fy][row]);
      if (!cells.has(key)) cells.set(key, pos);
    }
    var sx = Array.from(xs).sort(function (a, b) { return a - b; });
    var sy = Array.from(ys).sort(function (a, b) { return a - b; });
    var t = el("table", {id: "xy-table"}), head = el("tr");
    head.appendChild(el("th", {}, fy + " \\ " + fx));
    sx.forEach(function (c) { head.appendChild(el("th", {}, G.factors[fx].levels[c])); });
    t.appendChild(head);
    sy.forEach(function (cy) {
      var tr = el("tr");
      tr.appendChild(el("th", {}, G.factors[fy].levels[cy]));
      sx.forEach(function (cx) {
        var td = el("td"), p = cells.get(cx + "," + cy);
        if (p !== undefined && G.thumb[shown[p]]) {
          var img = el("img", {src: "thumbs/" + G.thumb[shown[p]], loading: "lazy", "data-pos": String(p), alt: G.ids[shown[p]]});
          img.addEventListener("click", function () { openDetail(p); });
          td.appendChild(img);
        }
        tr.appendChild(td);
      });
      t.appendChild(tr);
    });
    box.replaceChildren(t);
    document.body.dataset.xyCells = t.querySelectorAll("img").length;
  }
  $("view").addEventListener("change", function () {
    var xy = $("view").value === "xy";
    $("xy").hidden = !xy; $("grid").hidden = xy; $("xy-controls").hidden = !xy;
    render();
  });

  // ---- start ----
  function start() {
    buildFilters();
    buildXY();
    persist();
    apply();
    document.body.dataset.ready = "1";
    document.body.dataset.loadMs = performance.now().toFixed(0);
    grid.focus();
  }
  if (served) {
    fetch("/api/selection").then(function (r) { return r.json(); }).then(function (s) {
      if (s && s.format) {
        marks = {};
        ["keep", "reject", "starred"].forEach(function (m) { (s[m] || []).forEach(function (id) { marks[id] = m; }); });
      }
    }).catch(function () {}).then(start);
  } else start();
})();
